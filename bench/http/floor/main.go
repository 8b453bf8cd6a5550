// Command floor is bench/http's control: a bare net/http server that
// answers every request with the bytes of one file, with no routing,
// middleware or per-request work. Its figures in a run show how much of
// the gap to nginx belongs to Go's HTTP server and runtime on the
// machine at hand rather than to mailconf's handlers.
//
//	floor ADDR FILE
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: floor ADDR FILE")
		os.Exit(2)
	}
	body, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body) // the Autodiscover POST's body
			w.Header()["Content-Type"] = []string{"text/xml; charset=utf-8"}
			w.Write(body)
		}),
	}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}
