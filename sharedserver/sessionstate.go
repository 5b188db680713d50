package sharedserver

import (
	"encoding/binary"

	"github.com/pgmts/pgmts/circuits"
	"github.com/pgmts/pgmts/queue"
)

// Session state that outlives a transaction (a LISTEN, a SQL prepared
// statement, a WITH HOLD cursor, a temporary table, a session advisory
// lock, a LOADed library) lives in one backend only. Outside session mode
// the client is pinned to that backend while any of it is left
// (circuits.Pins), so the client keeps it and the next client never sees
// it.
//
// Some commands say what they made in their CommandComplete tag: LISTEN,
// PREPARE and LOAD pin at once. The rest do not (a temporary table made by
// CREATE TEMP TABLE ... AS, or an advisory lock taken in a SELECT), and
// dropping state (UNLISTEN, DEALLOCATE, CLOSE, DROP, DISCARD, an unlock)
// may or may not leave some. For those the server asks the backend itself
// (checkSQL) when the transaction is over, before it lets the server go:
// one extra query, run only after a command that can matter.

// checkSQL asks a backend which session state it holds, one boolean per
// checked pin, in the order of checkedPins. It runs between transactions,
// so any advisory lock left is a session-level one. The last column is
// completed with the names of the settings pgmts carries for the client
// (lower case): a parameter SET in the session that is none of them lives
// in this backend only.
const checkSQL = `SELECT EXISTS (SELECT FROM pg_catalog.pg_listening_channels()),
EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE from_sql),
EXISTS (SELECT FROM pg_catalog.pg_cursors WHERE is_holdable),
EXISTS (SELECT FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()),
EXISTS (SELECT FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()),
EXISTS (SELECT FROM pg_catalog.pg_settings WHERE source = 'session' AND pg_catalog.lower(name) <> ALL (`

// checkedPins are the pins checkSQL's columns answer, in order.
var checkedPins = [...]circuits.Pins{circuits.PinListen, circuits.PinPrepare, circuits.PinCursor, circuits.PinTemp,
	circuits.PinAdvisory, circuits.PinSetting}

// sessionTag looks at the CommandComplete tag of the owner's command: it
// pins the owner for state the tag names, or asks for a check when the
// transaction ends.
func (s *Server) sessionTag(owner *queue.Client, tag []byte) {
	if owner.Pool.Mode == circuits.Session {
		return // the client keeps its server anyway
	}
	switch string(tag) {
	case "LISTEN":
		s.pin(owner, circuits.PinListen, tag)
	case "PREPARE":
		s.pin(owner, circuits.PinPrepare, tag)
	case "LOAD":
		s.pin(owner, circuits.PinLoad, tag)
	case "DECLARE CURSOR", "SET":
		// WITH HOLD or not, a parameter pgmts carries or not: the
		// backend knows.
		s.recheck = true
	case "RESET", "UNLISTEN", "DEALLOCATE", "DEALLOCATE ALL", "CLOSE CURSOR", "CLOSE CURSOR ALL",
		"DISCARD ALL", "DISCARD TEMP", "DROP TABLE", "DROP VIEW", "DROP SEQUENCE":
		s.recheck = s.recheck || owner.Pinned()
	}
}

// pin adds pins to the owner for state its command (tag) made.
func (s *Server) pin(c *queue.Client, p circuits.Pins, tag []byte) {
	var added circuits.Pins
	c.Circuit(func(ci *circuits.Circuit) { added = ci.Pin(p) })
	if added != 0 {
		s.log.Info("client keeps its server while its session holds state only that server has",
			"client", c.ID, "command", string(tag), "pinned", added.String(), "pool_mode", c.Pool.Mode.String())
	}
}

// mentionsSessionState reports whether SQL text may make or drop state
// that no tag names: a temporary table (CREATE TEMP TABLE ... AS and
// SELECT INTO TEMP end with tag SELECT) or an advisory lock (taken and
// released in a SELECT). It looks for the words TEMP, TEMPORARY and
// pg_temp, and for "advisory"; a false alarm costs one check query.
func mentionsSessionState(sql []byte) bool {
	for i := 0; i+4 <= len(sql); i++ {
		switch sql[i] | 0x20 {
		case 't':
			if sql[i+1]|0x20 != 'e' || !lowerIs(sql[i+2:], "mp") ||
				i > 0 && identChar(sql[i-1]) && !(i >= 3 && lowerIs(sql[i-3:], "pg_")) {
				continue
			}
			rest := sql[i+4:]
			if len(rest) >= 5 && lowerIs(rest, "orary") {
				rest = rest[5:]
			}
			if len(rest) == 0 || !identChar(rest[0]) {
				return true
			}
		case 'a':
			if sql[i+1]|0x20 == 'd' && lowerIs(sql[i+2:], "visory") {
				return true
			}
		}
	}
	return false
}

// identChar reports whether c may continue an SQL identifier.
func identChar(c byte) bool {
	return c|0x20 >= 'a' && c|0x20 <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

// lowerIs reports whether b starts with word (lower case), ignoring
// ASCII case.
func lowerIs(b []byte, word string) bool {
	if len(b) < len(word) {
		return false
	}
	for i := range len(word) {
		if b[i]|0x20 != word[i] {
			return false
		}
	}
	return true
}

// checkSessionState asks the backend which session state the owner's
// session still holds; the owner is pinned (PinChecking) meanwhile and
// has nothing in flight. The answer sets the owner's pins, and lets the
// server go if none is left. Requests the client sends meanwhile are
// written after the check, so its answer is about the state before them.
func (s *Server) checkSessionState(owner *queue.Client) error {
	var carried string
	owner.Circuit(func(ci *circuits.Circuit) { carried = circuits.NamesArraySQL(ci.Settings()) })
	return s.internalQuery(checkSQL+carried+"))", func(row []byte) {
		if s.owner.Load() != owner {
			return // the client left meanwhile: clientGone reset the backend
		}
		found, ok := parsePins(row)
		if !ok {
			// Keep the server, still marked as checking: unknown state
			// must not reach another client (the failed query was logged).
			return
		}
		var before, after circuits.Pins
		owner.Circuit(func(ci *circuits.Circuit) {
			before = ci.Pins()
			ci.SetPins(found)
			after = ci.Pins()
		})
		if added := after &^ before; added != 0 {
			s.log.Info("client keeps its server while its session holds state only that server has",
				"client", owner.ID, "pinned", added.String(), "pool_mode", owner.Pool.Mode.String())
		} else if after == 0 && before&^circuits.PinChecking != 0 {
			s.log.Debug("client's session holds no state of its server any more: it is unpinned", "client", owner.ID)
		}
		if owner.Settle(s) {
			s.release(owner)
		}
	})
}

// parsePins reads checkSQL's DataRow.
func parsePins(row []byte) (circuits.Pins, bool) {
	if len(row) < 2 || int(binary.BigEndian.Uint16(row)) != len(checkedPins) {
		return 0, false
	}
	row = row[2:]
	var found circuits.Pins
	for _, pin := range checkedPins {
		if len(row) < 5 || binary.BigEndian.Uint32(row) != 1 {
			return 0, false
		}
		switch row[4] {
		case 't':
			found |= pin
		case 'f':
		default:
			return 0, false
		}
		row = row[5:]
	}
	return found, true
}
