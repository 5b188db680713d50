package sharedserver

import (
	"encoding/binary"

	"github.com/pgmts/pgmts/circuits"
	"github.com/pgmts/pgmts/queue"
	"github.com/pgmts/pgmts/wire"
)

// Named prepared statements follow their client from server to server: as
// the server writes a client's messages it looks at Parse, Bind, Describe
// and Close, and where the client uses a statement this backend does not
// hold (or holds under the same name with other text, from another
// client), it slips in a Close and/or the client's own Parse first. The
// replies to those (CloseComplete, ParseComplete) are swallowed when they
// come back: each is tagged with the Sync segment it belongs to, so a reply
// skipped because of an earlier error in that segment is forgotten at its
// ReadyForQuery.

// injected is a reply the server must swallow.
type injected struct {
	seg uint64 // the ReadyForQuery count that closes its segment
	typ byte   // '1' ParseComplete or '3' CloseComplete
}

// prepareStatements returns data, with Close/Parse messages slipped in
// where the backend must be given the client's statements first.
func (s *Server) prepareStatements(c *queue.Client, data []byte) []byte {
	var out []byte // nil until something is slipped in
	copied := 0    // data[:copied] is already in out
	slip := func(at int, msg []byte, typ byte) {
		out = append(out, data[copied:at]...)
		copied = at
		out = append(out, msg...)
		s.injected = append(s.injected, injected{s.wseg, typ})
	}
	// ensure gives the backend the client's statement name before the
	// message at offset at uses it.
	ensure := func(prep map[string]string, name string, at int) {
		want, ok := prep[name]
		if !ok {
			return // unknown to the client too: PostgreSQL says so
		}
		have, has := s.statements[name]
		if has && have == want {
			return
		}
		if has {
			slip(at, closeStatement(name), '3')
		}
		slip(at, []byte(want), '1')
		s.statements[name] = want
	}
	c.Circuit(func(ci *circuits.Circuit) {
		prep := ci.Statements()
		for off := 0; off+5 <= len(data); {
			typ, size, _ := wire.Header(data[off:])
			body := data[off+5 : off+size]
			switch typ {
			case 'P':
				if name := cstr(body); name != "" {
					if _, has := s.statements[name]; has {
						slip(off, closeStatement(name), '3')
					}
					msg := string(data[off : off+size])
					ci.SetStatement(name, msg)
					prep = ci.Statements()
					s.statements[name] = msg
				}
			case 'B':
				portal := cstr(body)
				if len(body) > len(portal)+1 {
					if name := cstr(body[len(portal)+1:]); name != "" {
						ensure(prep, name, off)
					}
				}
			case 'D':
				if len(body) > 1 && body[0] == 'S' {
					if name := cstr(body[1:]); name != "" {
						ensure(prep, name, off)
					}
				}
			case 'C':
				if len(body) > 1 && body[0] == 'S' {
					name := cstr(body[1:])
					delete(prep, name)
					delete(s.statements, name)
				}
			case 'Q', 'S', 'F':
				s.wseg++
			}
			off += size
		}
	})
	if out == nil {
		return data
	}
	return append(out, data[copied:]...)
}

// swallowInjected reports whether a ParseComplete/CloseComplete answers a
// message pgmts slipped in.
func (s *Server) swallowInjected(typ byte) bool {
	if len(s.injected) > 0 && s.injected[0].seg == s.rseg && s.injected[0].typ == typ {
		s.injected = s.injected[1:]
		return true
	}
	return false
}

// segmentDone is called at each ReadyForQuery: slipped-in messages of the
// segment that never got a reply (an error skipped them) are forgotten.
func (s *Server) segmentDone() {
	for len(s.injected) > 0 && s.injected[0].seg <= s.rseg {
		s.injected = s.injected[1:]
	}
	s.rseg++
}

// resync is called when a client lets the server go: every reply is in,
// so the segment counts agree again even if a Sync that got no
// ReadyForQuery (one sent during COPY IN) had put them apart.
func (s *Server) resync() {
	s.rseg = s.wseg
	s.injected = s.injected[:0]
}

// forgetStatements is called when the backend dropped its prepared
// statements (DISCARD ALL, DEALLOCATE): they will be prepared again on use.
func (s *Server) forgetStatements() { clear(s.statements) }

func closeStatement(name string) []byte {
	msg := make([]byte, 5, 7+len(name))
	msg[0] = 'C'
	msg = append(msg, 'S')
	msg = append(msg, name...)
	msg = append(msg, 0)
	binary.BigEndian.PutUint32(msg[1:], uint32(len(msg)-1))
	return msg
}

func cstr(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
