package web

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a token bucket per key (caller address, mailbox) with a bounded
// number of keys. When the table is full, keys whose bucket has refilled
// are forgotten (they are indistinguishable from new ones); if none has,
// new keys are refused rather than old ones evicted, so that flooding the
// table cannot reset anybody's limit.
type limiter struct {
	mu    sync.Mutex
	every rate.Limit
	burst int
	max   int
	keys  map[string]*rate.Limiter
}

func newLimiter(n int, window time.Duration, max int) *limiter {
	return &limiter{every: rate.Limit(float64(n) / window.Seconds()), burst: n, max: max, keys: map[string]*rate.Limiter{}}
}

// allow takes one token for key at now, or says how long to wait.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.keys[key]
	if lim == nil {
		if len(l.keys) >= l.max {
			for k, v := range l.keys {
				if v.TokensAt(now) >= float64(l.burst) {
					delete(l.keys, k)
				}
			}
		}
		if len(l.keys) >= l.max {
			return false, time.Duration(float64(time.Second) / float64(l.every))
		}
		lim = rate.NewLimiter(l.every, l.burst)
		l.keys[key] = lim
	}
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Minute
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// callerKey groups a caller's address: one IPv4 address, or one IPv6 /64
// (what a single subscriber is usually given).
func callerKey(remote string) string {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		if a, err := netip.ParseAddr(remote); err == nil {
			ap = netip.AddrPortFrom(a, 0)
		} else {
			return remote
		}
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
