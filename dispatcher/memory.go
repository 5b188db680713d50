package dispatcher

import (
	"runtime/debug"
	"time"
)

// A burst of logins leaves memory behind: each login makes several KiB of
// garbage (SCRAM, startup and reply buffers), and with GOGC=100 the heap
// grows to twice what the new clients hold before it is collected. The
// runtime keeps pages up to that goal resident, so a pooler that goes idle
// after a reconnect storm would keep about twice its real per-client cost
// for as long as it runs. Once logins stop for loginQuiet after at least
// loginBurst of them, pgmts collects and gives the free pages back to the
// OS (debug.FreeOSMemory): one collection of a heap that holds mostly idle
// clients, off the loops, at most once per loginBurst logins.
const (
	loginQuiet = 250 * time.Millisecond
	loginBurst = 1000
)

// releaseAfterLogins runs until quit is closed.
func (g *Group) releaseAfterLogins(quit <-chan struct{}) {
	t := time.NewTicker(loginQuiet)
	defer t.Stop()
	var b loginBursts
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		if burst := b.settled(g.nextID.Load()); burst > 0 {
			start := time.Now()
			debug.FreeOSMemory()
			g.log.Debug("memory returned to the OS after a burst of logins", "logins", burst, "took", time.Since(start))
		}
	}
}

// loginBursts tells, from the login count read every loginQuiet, when a
// burst of logins is over.
type loginBursts struct{ seen, released uint64 }

// settled takes the login count and returns the size of a burst that has
// just settled (no login since the last reading), or 0.
func (b *loginBursts) settled(logins uint64) uint64 {
	if logins != b.seen {
		b.seen = logins
		return 0
	}
	burst := logins - b.released
	if burst < loginBurst {
		return 0
	}
	b.released = logins
	return burst
}
