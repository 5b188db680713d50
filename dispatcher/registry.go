package dispatcher

import "crypto/rand"

// registry holds the logged-in clients by the process ID of their cancel
// key, for cancel requests and the console; the Group's mu guards it.
//
// A process ID is a slot number plus one, and the slots of clients that
// left are reused, so the table is a slice of pointers (8 bytes a client)
// rather than a map (about 28 bytes an entry with 10,000 clients). What
// guards a cancel is the secret half of the key, 32 random bits, as in
// PostgreSQL, whose process IDs are no secret either: a cancel request
// that names a reused slot with the previous client's key does nothing.
type registry struct {
	slots []*clientConn
	free  []uint32 // slot numbers to reuse, last freed first
}

// count is the number of registered clients.
func (r *registry) count() int { return len(r.slots) - len(r.free) }

// add gives cc its cancel key and a slot.
func (r *registry) add(cc *clientConn) {
	var slot uint32
	if n := len(r.free); n > 0 {
		slot = r.free[n-1]
		r.free = r.free[:n-1]
		r.slots[slot] = cc
	} else {
		slot = uint32(len(r.slots))
		r.slots = append(r.slots, cc)
	}
	cc.pid = slot + 1
	_, _ = rand.Read(cc.key[:])
}

// remove frees cc's slot, if it has one.
func (r *registry) remove(cc *clientConn) {
	if r.get(cc.pid) != cc {
		return
	}
	r.slots[cc.pid-1] = nil
	r.free = append(r.free, cc.pid-1)
	if r.count() == 0 {
		// Everyone left: start small again.
		r.slots, r.free = nil, nil
	}
}

// get returns the client whose cancel key has process ID pid, or nil.
func (r *registry) get(pid uint32) *clientConn {
	if pid == 0 || int64(pid) > int64(len(r.slots)) {
		return nil
	}
	return r.slots[pid-1]
}

// each calls f for every registered client.
func (r *registry) each(f func(*clientConn)) {
	for _, cc := range r.slots {
		if cc != nil {
			f(cc)
		}
	}
}
