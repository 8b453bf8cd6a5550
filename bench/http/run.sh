#!/usr/bin/env bash
# bench/http: mailconf's configuration answers against nginx serving the same
# bytes as static files, in the same run, with wrk (64 keep-alive
# connections, 2 threads). Prints requests/s, p99 latency and the ratio,
# and the same for a control: a bare Go net/http server answering with
# the same bytes (bench/http/floor), the most any Go HTTP server can
# reach in that run.
#
# usage: bench/http/run.sh            (DURATION=10s CONNS=64 THREADS=2)
# Needs: wrk, nginx (Debian packages wrk, nginx-light), go.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
work=$(mktemp -d /tmp/mailconf-bench-http.XXXXXX)
chmod 755 "$work" # nginx workers run as an unprivileged user
mc_port=18480
ng_port=18481
fl_port=18482
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx/nginx.pid" ] && kill -QUIT "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
for tool in wrk nginx go; do command -v $tool >/dev/null || { echo "bench/http: $tool is missing (apt-get install wrk nginx-light)" >&2; exit 2; }; done

go build -o "$work/mailconf" ./cmd/mailconf
go build -o "$work/floor" ./bench/http/floor
cat > "$work/mailconf.toml" <<CFG
data_dir = "$work/data"
hostname = "mail.example.test"
[listen]
http = "127.0.0.1:$mc_port"
imaps = "127.0.0.1:$((mc_port+10))"
submissions = "127.0.0.1:$((mc_port+11))"
[[domain]]
name = "example.test"
CFG
"$work/mailconf" serve --config "$work/mailconf.toml" >"$work/mailconf.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$mc_port/healthz" >/dev/null && break; sleep 0.1; done

# nginx serves exactly the bytes mailconf answers with.
mkdir -p "$work/nginx/root/mail" "$work/nginx/root/autodiscover" "$work/nginx/tmp" "$work/nginx/logs"
curl -fs "http://127.0.0.1:$mc_port/mail/config-v1.1.xml?emailaddress=u@example.test" >"$work/nginx/root/mail/config-v1.1.xml"
req='<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>u@example.test</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>'
curl -fs -X POST -H 'Content-Type: text/xml' --data-binary "$req" "http://127.0.0.1:$mc_port/autodiscover/autodiscover.xml" >"$work/nginx/root/autodiscover/response.xml"
cat > "$work/nginx/nginx.conf" <<NG
daemon on;
pid $work/nginx/nginx.pid;
worker_processes auto;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp/body;
  proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/fastcgi;
  uwsgi_temp_path $work/nginx/tmp/uwsgi;
  scgi_temp_path $work/nginx/tmp/scgi;
  sendfile on; tcp_nopush on; keepalive_requests 1000000; server_tokens off;
  server {
    listen 127.0.0.1:$ng_port;
    root $work/nginx/root;
    location = /mail/config-v1.1.xml { default_type "text/xml; charset=utf-8"; }
    location = /autodiscover/autodiscover.xml {
      client_max_body_size 64k; client_body_buffer_size 64k;
      default_type "text/xml; charset=utf-8";
      alias $work/nginx/root/autodiscover/response.xml;
      error_page 405 =200 /autodiscover/response.xml;
    }
    location = /autodiscover/response.xml { internal; default_type "text/xml; charset=utf-8"; }
  }
}
NG
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" 2>"$work/nginx/logs/start.log"
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$ng_port/mail/config-v1.1.xml" >/dev/null && break; sleep 0.1; done

cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/xml"
wrk.body = [[$req]]
LUA

# run NAME URL [script] -> prints "rps p99_ms"
measure() {
  local out
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency ${3:+-s "$3"} "$2")
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' <<<"$out")
  if grep -q "Non-2xx" <<<"$out"; then echo "bench/http: $1 got non-2xx answers" >&2; fi
  echo "$rps $p99"
}

printf '%-28s %12s %10s %12s %10s %8s %12s %10s %8s\n' workload mailconf_rps p99_ms nginx_rps p99_ms ratio floor_rps p99_ms ratio
for w in "GET config-v1.1.xml|/mail/config-v1.1.xml?emailaddress=u@example.test||mail/config-v1.1.xml" \
         "POST autodiscover.xml|/autodiscover/autodiscover.xml|$work/post.lua|autodiscover/response.xml"; do
  IFS='|' read -r name path script file <<<"$w"
  "$work/floor" "127.0.0.1:$fl_port" "$work/nginx/root/$file" &
  fl_pid=$!
  pids+=($fl_pid)
  for _ in $(seq 1 50); do curl -fs -o /dev/null "http://127.0.0.1:$fl_port/" && break; sleep 0.1; done
  read -r ng_rps ng_p99 < <(measure "nginx $name" "http://127.0.0.1:$ng_port$path" "$script")
  read -r mc_rps mc_p99 < <(measure "mailconf $name" "http://127.0.0.1:$mc_port$path" "$script")
  read -r fl_rps fl_p99 < <(measure "floor $name" "http://127.0.0.1:$fl_port$path" "$script")
  kill "$fl_pid"; wait "$fl_pid" 2>/dev/null || true
  ratio=$(awk -v a="$mc_rps" -v b="$ng_rps" 'BEGIN {printf "%.2f", a/b}')
  fl_ratio=$(awk -v a="$fl_rps" -v b="$ng_rps" 'BEGIN {printf "%.2f", a/b}')
  printf '%-28s %12.0f %10.2f %12.0f %10.2f %8s %12.0f %10.2f %8s\n' "$name" "$mc_rps" "$mc_p99" "$ng_rps" "$ng_p99" "$ratio" "$fl_rps" "$fl_p99" "$fl_ratio"
done
echo "targets: ratio >= 0.70, mailconf p99 < 5 ms"
