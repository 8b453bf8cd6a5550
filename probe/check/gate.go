package check

import (
	"context"
	"fmt"
	"sync"

	"mailconf/autoconfig"
)

// Gate enforces "one login attempt per protocol per run" and "after a
// rejected password, no further logins" (reference/probe.md §0.4, §8.3)
// while the checks run in parallel. Every participant has a rank
// (protocol priority, then endpoint and address preference); the login
// goes to the best-ranked participant that reaches the auth stage, and a
// protocol's turn comes only when every better-ranked protocol is decided.
type Gate struct {
	mu       sync.Mutex
	order    []autoconfig.Protocol
	parts    map[int]*participant
	protos   map[autoconfig.Protocol]*protoState
	rejected string
}

type participant struct {
	proto autoconfig.Protocol
	done  chan struct{}
	once  sync.Once
}

type protoState struct {
	remaining int
	resolved  chan struct{}
	once      sync.Once
	used      string // description of the endpoint that logged in
}

// NewGate returns a gate for the given participants: ranks[i] belongs to
// protocol protos[i]. Protocol priority is the order of first appearance
// in order.
func NewGate(order []autoconfig.Protocol, ranks []int, protos []autoconfig.Protocol) *Gate {
	g := &Gate{order: order, parts: map[int]*participant{}, protos: map[autoconfig.Protocol]*protoState{}}
	for _, p := range order {
		g.protos[p] = &protoState{resolved: make(chan struct{})}
	}
	for i, r := range ranks {
		g.parts[r] = &participant{proto: protos[i], done: make(chan struct{})}
		ps, ok := g.protos[protos[i]]
		if !ok {
			ps = &protoState{resolved: make(chan struct{})}
			g.protos[protos[i]] = ps
			g.order = append(g.order, protos[i])
		}
		ps.remaining++
	}
	for _, ps := range g.protos {
		if ps.remaining == 0 {
			ps.once.Do(func() { close(ps.resolved) })
		}
	}
	return g
}

// Acquire waits for the participant's turn. It returns ok when this
// participant is the one to log in; otherwise the reason for skipping.
// Whatever it returns, the caller must call Done(rank, …) exactly once.
func (g *Gate) Acquire(ctx context.Context, rank int) (ok bool, reason string) {
	me := g.parts[rank]
	if me == nil {
		return false, "not registered for login"
	}
	var waits []chan struct{}
	g.mu.Lock()
	for r, p := range g.parts {
		if r < rank && p.proto == me.proto {
			waits = append(waits, p.done)
		}
	}
	for _, p := range g.order {
		if p == me.proto {
			break
		}
		waits = append(waits, g.protos[p].resolved)
	}
	g.mu.Unlock()
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return false, "timed out waiting for the other login tests"
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.rejected != "" {
		return false, g.rejected
	}
	if used := g.protos[me.proto].used; used != "" {
		return false, fmt.Sprintf("login already tested on %s (one attempt per protocol per run)", used)
	}
	return true, ""
}

// Done ends a participant's turn. attempted says it logged in (as where);
// rejected says the server rejected the password, which stops every later
// login in this run.
func (g *Gate) Done(rank int, attempted bool, where string, rejected bool) {
	me := g.parts[rank]
	if me == nil {
		return
	}
	me.once.Do(func() {
		g.mu.Lock()
		ps := g.protos[me.proto]
		if attempted {
			ps.used = where
			if rejected && g.rejected == "" {
				g.rejected = fmt.Sprintf("password already rejected by %s", where)
			}
		}
		ps.remaining--
		resolve := attempted || ps.remaining == 0
		g.mu.Unlock()
		close(me.done)
		if resolve {
			ps.once.Do(func() { close(ps.resolved) })
		}
	})
}
