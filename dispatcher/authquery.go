package dispatcher

import (
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"

	"github.com/pgmts/pgmts/auth"
	"github.com/pgmts/pgmts/wire"
)

// lookupUser asks the pools for the password of a user the config does
// not know (auth_query), then challenges the client. The client's input
// waits meanwhile, as it does while the pool prepares.
func (cc *clientConn) lookupUser() gnet.Action {
	l := cc.login
	cc.phase = phasePreparing
	return cc.await(func(answer func(then func() gnet.Action)) {
		cc.d.g.router.LookupUser(l.database, l.user, func(secret auth.Secret, err error) {
			answer(func() gnet.Action {
				if err != nil {
					// The pools logged the cause for the operator.
					e := wire.Fatal("28000", "pgmts could not look up the password of user %q: auth_query failed", l.user)
					e.Hint = "This is a pgmts configuration problem; its log says what to fix."
					return cc.fatal(e)
				}
				l.secret, l.known = secret, secret.Kind() != auth.KindNone
				return cc.challenge()
			})
		})
	})
}

// await runs start, which must call answer once, from any goroutine, with
// what to do next on the loop. An answer given before start returns runs
// at once; a later one is carried onto the loop, and the connection's
// buffered input is then processed.
func (cc *clientConn) await(start func(answer func(then func() gnet.Action))) gnet.Action {
	var state atomic.Int32 // 0 = in start, 1 = returned, 2 = answered inline
	var inline func() gnet.Action
	start(func(then func() gnet.Action) {
		// Written before the CAS that publishes it: the loop reads it only
		// after seeing state 2.
		inline = then
		if state.CompareAndSwap(0, 2) {
			return
		}
		cc.d.run(func() {
			if cc.closed {
				return
			}
			if then() == gnet.Close {
				cc.closed = true
				_ = cc.c.Close()
			} else {
				cc.resume()
			}
		})
	})
	if state.CompareAndSwap(0, 1) {
		cc.flush() // the client may read what it has while it waits
		return gnet.None
	}
	return inline()
}

// passthrough is what this login leaves the pool to log in to PostgreSQL
// with when it has no password: the SCRAM keys the client proved against a
// verifier, or the user's md5 hash.
func (l *login) passthrough() (auth.Passthrough, bool) {
	var pt auth.Passthrough
	if l.scram != nil {
		pt.SCRAM = l.scram.Keys()
	}
	if hash, ok := l.secret.MD5Hash(); ok && l.known {
		pt.MD5 = hash
	}
	return pt, pt.SCRAM != nil || pt.MD5 != ""
}
