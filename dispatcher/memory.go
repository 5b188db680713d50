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

// releaseAfterLogins runs until quit is closed. It reads the login count
// every loginQuiet only while logins come in: between bursts it sleeps
// until the next login (loginSeen), so an idle pgmts has no ticker waking.
func (g *Group) releaseAfterLogins(quit <-chan struct{}) {
	t := time.NewTicker(loginQuiet)
	defer t.Stop()
	var b loginBursts
	for {
		// Drained before the count is read: a login after the reading
		// leaves a fresh signal.
		select {
		case <-g.loginSeen:
		default:
		}
		logins := g.nextID.Load()
		quiet := logins == b.seen
		if burst := b.settled(logins); burst > 0 {
			start := time.Now()
			debug.FreeOSMemory()
			g.log.Debug("memory returned to the OS after a burst of logins", "logins", burst, "took", time.Since(start))
		}
		if quiet {
			t.Stop()
			select {
			case <-quit:
				return
			case <-g.loginSeen:
			}
			t.Reset(loginQuiet)
		}
		select {
		case <-quit:
			return
		case <-t.C:
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

// newClientID numbers a client that has just logged in, and wakes
// releaseAfterLogins if it sleeps.
func (g *Group) newClientID() uint64 {
	id := g.nextID.Add(1)
	select {
	case g.loginSeen <- struct{}{}:
	default: // awake, or woken already
	}
	return id
}
