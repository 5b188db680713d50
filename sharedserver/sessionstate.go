package sharedserver

import (
	"encoding/binary"
	"maps"
	"math/bits"
	"slices"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgmts/pgmts/circuits"
	"github.com/pgmts/pgmts/queue"
	"github.com/pgmts/pgmts/wire"
)

// Session state that outlives a transaction (a LISTEN, a SQL prepared
// statement, a WITH HOLD cursor, a temporary table, a session advisory
// lock, a LOADed library) lives in one backend only. Outside session mode
// the client is pinned to that backend while any of it is left
// (circuits.Pins), so the client keeps it and the next client never sees
// it. Statement mode keeps no such state: the client gets an error
// (refuse), and the backend that holds the state is closed once the
// client lets it go.
//
// Some commands say what they made in their CommandComplete tag: LISTEN,
// PREPARE and LOAD pin at once. The rest do not (a temporary table made by
// CREATE TEMP TABLE ... AS, or an advisory lock taken in a SELECT), and
// dropping state (UNLISTEN, DEALLOCATE, CLOSE, DROP, DISCARD, an unlock)
// may or may not leave some. For those the server asks the backend itself
// (checkSQL) when the transaction is over, before it lets the server go:
// one extra query, run only after a command that can matter.
//
// Parameters are carried, not pinned: PostgreSQL reports some (TimeZone,
// application_name, ...) with ParameterStatus, and after a SET, RESET or
// DISCARD ALL the server reads the session's own settings back
// (settingsSQL) and makes them the client's settings, which every server
// that takes the client applies (and the next client's diff resets).

// checkSQL asks a backend which session state it holds, one boolean per
// checked pin, in the order of checkedPins. It runs between transactions,
// so any advisory lock left is a session-level one.
const checkSQL = `SELECT EXISTS (SELECT FROM pg_catalog.pg_listening_channels()),
EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE from_sql),
EXISTS (SELECT FROM pg_catalog.pg_cursors WHERE is_holdable),
EXISTS (SELECT FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()),
EXISTS (SELECT FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid())`

// checkedPins are the pins checkSQL's columns answer, in order.
var checkedPins = [...]circuits.Pins{circuits.PinListen, circuits.PinPrepare, circuits.PinCursor, circuits.PinTemp,
	circuits.PinAdvisory}

// settingsSQL reads the parameters set in the session (by the client, or
// by pgmts for it), as set_config can set them again elsewhere.
const settingsSQL = `SELECT pg_catalog.lower(name), pg_catalog.current_setting(name) FROM pg_catalog.pg_settings
WHERE source = 'session' AND context IN ('user', 'superuser')`

// sessionTag looks at the CommandComplete tag of the owner's command: it
// pins the owner for state the tag names, or asks for a check when the
// transaction ends.
func (s *Server) sessionTag(owner *queue.Client, tag []byte) {
	if owner.Pool.Mode == circuits.Session {
		return // the client keeps its server anyway
	}
	switch string(tag) {
	case "LISTEN":
		s.keep(owner, circuits.PinListen, tag)
	case "PREPARE":
		s.keep(owner, circuits.PinPrepare, tag)
	case "LOAD":
		s.keep(owner, circuits.PinLoad, tag)
	case "SET", "RESET":
		s.refetch = true
	case "DISCARD ALL":
		s.refetch = true
		s.recheck = s.recheck || owner.Pinned()
	case "UNLISTEN", "DEALLOCATE", "DEALLOCATE ALL", "CLOSE CURSOR", "CLOSE CURSOR ALL",
		"DISCARD TEMP", "DROP TABLE", "DROP VIEW", "DROP SEQUENCE":
		s.recheck = s.recheck || owner.Pinned()
	}
}

// keep pins the owner for state its command (tag) made, or, in statement
// mode, refuses the command.
func (s *Server) keep(owner *queue.Client, p circuits.Pins, tag []byte) {
	if owner.Pool.Mode == circuits.Statement {
		s.refuse(owner, string(tag))
		s.refusing = true // the error stands in for the rest of the reply
		return
	}
	s.pin(owner, p, tag)
}

// refuse answers, in statement mode, a command that made session state
// (what names it): the client gets an error, before the ReadyForQuery
// that ends the command, and the backend, which holds the state, is
// closed once the client lets it go.
func (s *Server) refuse(owner *queue.Client, what string) {
	s.emit(statementStateError(what).Encode(nil))
	s.stats.refused()
	s.recheck, s.refetch, s.refused = false, false, true
	s.quitting.Store(true)
	s.log.Info("refused session state in statement pooling mode; the server connection that holds it will be closed",
		"client", owner.ID, "state", what)
}

// statementStateError is what a statement-mode client gets for a command
// that made state outliving it.
func statementStateError(what string) *wire.Error {
	return &wire.Error{Severity: "ERROR", Code: "0A000",
		Message: what + " is not allowed in statement pooling mode",
		Detail:  "In statement pooling mode no session state outlives a statement: pgmts closes the server connection that holds it.",
		Hint:    "Use transaction or session pooling mode for clients that need LISTEN, SQL PREPARE, LOAD, WITH HOLD cursors, temporary tables or session advisory locks."}
}

// failCopy ends a COPY FROM STDIN that a refused query started: the
// client, told of the error, sends no data, so the backend is sent a
// CopyFail, which ends the query.
func (s *Server) failCopy() {
	if err := s.send(wire.Append(nil, &pgproto3.CopyFail{Message: "statement pooling mode refused the query"})); err != nil {
		s.fail(err)
	}
}

// releaseReady sends the owner the ReadyForQuery held while its backend
// was asked about session state.
func (s *Server) releaseReady() {
	s.emit(wire.ReadyIdle)
	s.readyHeld = false
	s.flush()
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

// scanSessionState asks for a check at the transaction's end (recheck)
// when the SQL of a Query or Parse in data, a request just written, may
// make or drop state that no tag names. It runs after the write: its
// answer is wanted only at the ReadyForQuery, so the scan is kept off the
// path of the request to PostgreSQL.
func (s *Server) scanSessionState(c *queue.Client, data []byte) {
	if c.Pool.Mode == circuits.Session || s.recheck {
		return
	}
	for off := 0; off+5 <= len(data); {
		typ, size, _ := wire.Header(data[off:])
		if (typ == 'Q' || typ == 'P') && mentionsSessionState(data[off+5:off+size]) {
			s.recheck = true
			return
		}
		off += size
	}
}

// mentionsSessionState reports whether SQL text may make or drop state
// that no tag names: a temporary table (CREATE TEMP TABLE ... AS and
// SELECT INTO TEMP end with tag SELECT), an advisory lock (taken and
// released in a SELECT) or a WITH HOLD cursor (DECLARE's tag does not say
// which, and most cursors end with their transaction). It looks for the
// words TEMP, TEMPORARY, pg_temp and HOLD (not after WITHOUT), and for
// "advisory"; a false alarm costs one check query.
func mentionsSessionState(sql []byte) bool {
	// The scan runs on every query in transaction and statement mode, so
	// it tests eight positions at a time for the first two letters of a
	// word looked for (te, ho, ad, in any case): SQL is full of t, h and
	// a, but these pairs are rare. Only a position that has one is looked
	// at further.
	if len(sql) < 9 {
		return anyStateWordAt(sql)
	}
	// The last block overlaps the one before it: no position is left to a
	// loop of single bytes (the last byte starts no word).
	for i := 0; ; i += 8 {
		i = min(i, len(sql)-9)
		x := binary.LittleEndian.Uint64(sql[i:]) | caseBits
		y := binary.LittleEndian.Uint64(sql[i+1:]) | caseBits
		// A byte of te is zero where x has t and y has e, and so on.
		te := (x ^ 't'*lowBytes) | (y ^ 'e'*lowBytes)
		ho := (x ^ 'h'*lowBytes) | (y ^ 'o'*lowBytes)
		ad := (x ^ 'a'*lowBytes) | (y ^ 'd'*lowBytes)
		// nonzero sets a byte's top bit unless the byte is zero (the
		// other seven bits are set in all bytes).
		m := ^(nonzero(te) & nonzero(ho) & nonzero(ad))
		for ; m != 0; m &= m - 1 {
			if stateWordAt(sql, i+bits.TrailingZeros64(m)/8) {
				return true
			}
		}
		if i == len(sql)-9 {
			return false
		}
	}
}

const (
	lowBytes = 0x0101010101010101 // times a byte: the byte in all eight
	caseBits = 0x2020202020202020 // or'ed in: ASCII letters in lower case
	low7Bits = 0x7f7f7f7f7f7f7f7f
)

// nonzero returns v with its low seven bits set in every byte and the top
// bit set in each byte that is not zero. (The shorter test with a
// subtraction is inexact above a zero byte, because of the borrow.)
func nonzero(v uint64) uint64 { return (v&low7Bits + low7Bits) | v | low7Bits }

// anyStateWordAt is mentionsSessionState one position at a time.
func anyStateWordAt(sql []byte) bool {
	for i := range sql {
		if stateWordAt(sql, i) {
			return true
		}
	}
	return false
}

// stateWordAt reports whether a word mentionsSessionState looks for
// starts at sql[i].
func stateWordAt(sql []byte, i int) bool {
	if i+4 > len(sql) { // every word looked for has four letters or more
		return false
	}
	switch sql[i] | 0x20 {
	case 'h':
		return sql[i+1]|0x20 == 'o' && wordAt(sql, i, "hold") && !afterWithout(sql[:i])
	case 't':
		return sql[i+1]|0x20 == 'e' &&
			(wordAt(sql, i, "temp") || wordAt(sql, i, "temporary") || i >= 3 && wordAt(sql, i-3, "pg_temp"))
	case 'a':
		return sql[i+1]|0x20 == 'd' && lowerIs(sql[i+2:], "visory")
	}
	return false
}

// wordAt reports whether sql has the word (lower case, any case in sql)
// at i, not as part of a longer identifier.
func wordAt(sql []byte, i int, word string) bool {
	end := i + len(word)
	return lowerIs(sql[i:], word) && (i == 0 || !identChar(sql[i-1])) && (end == len(sql) || !identChar(sql[end]))
}

// afterWithout reports whether before ends with the word WITHOUT and
// white space.
func afterWithout(before []byte) bool {
	end := len(before)
	for end > 0 && (before[end-1] == ' ' || before[end-1] == '\t' || before[end-1] == '\n' || before[end-1] == '\r') {
		end--
	}
	return end >= len("without") && wordAt(before, end-len("without"), "without")
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
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != word[i] {
			return false
		}
	}
	return true
}

// askBackend sends the questions the owner's last transaction raised
// (refetch, recheck). The owner is pinned (PinChecking) and has nothing in
// flight; requests it sends meanwhile are written after the questions, so
// the answers are about the session before them. The last answer ends
// PinChecking and lets the server go if nothing else holds it.
func (s *Server) askBackend(owner *queue.Client) error {
	refetch, recheck := s.refetch, s.recheck
	s.refetch, s.recheck = false, false
	if refetch {
		s.stats.asked()
		err := s.internalQuery(settingsSQL, func(rows []byte, ok bool) {
			s.gotSettings(owner, rows, ok)
			if !recheck {
				s.answered(owner, nil)
			}
		})
		if err != nil || !recheck {
			return err
		}
	}
	s.stats.asked()
	return s.internalQuery(checkSQL, func(rows []byte, ok bool) {
		found, parsed := parsePins(rows)
		if !ok || !parsed {
			if s.readyHeld && s.owner.Load() == owner {
				// Statement mode: the client hears of it, and the
				// backend, whose state is unknown, is closed.
				s.refuse(owner, "session state that could not be checked")
				var none circuits.Pins
				s.answered(owner, &none)
			}
			// Else keep the server, still marked as checking: unknown
			// state must not reach another client (a failed query was
			// logged).
			return
		}
		s.answered(owner, &found)
	})
}

// gotSettings makes the session's settings (settingsSQL's rows) the
// owner's, and what this backend carries.
func (s *Server) gotSettings(owner *queue.Client, rows []byte, ok bool) {
	if s.owner.Load() != owner {
		return // the client left meanwhile: clientGone reset the backend
	}
	settings, parsed := parseSettings(rows)
	if !ok || !parsed {
		// What the client SET is unknown: it stays on this backend.
		s.pin(owner, circuits.PinSetting, []byte("SET"))
		return
	}
	owner.Circuit(func(ci *circuits.Circuit) { ci.ReplaceSettings(settings) })
	clear(s.settings)
	maps.Copy(s.settings, settings)
	s.carriesKnown = false
}

// answered ends PinChecking with the pins found (nil: the pins stand), and
// lets the server go if nothing holds it.
func (s *Server) answered(owner *queue.Client, found *circuits.Pins) {
	if s.owner.Load() != owner {
		return
	}
	if s.readyHeld {
		if found != nil && *found&circuits.Checked != 0 {
			s.refuse(owner, "session state left by the statement ("+(*found&circuits.Checked).String()+")")
			*found &^= circuits.Checked
		}
		s.releaseReady()
	}
	var before, after circuits.Pins
	owner.Circuit(func(ci *circuits.Circuit) {
		before = ci.Pins()
		if found != nil {
			ci.SetPins(*found)
		} else {
			ci.SetPins(before)
		}
		after = ci.Pins()
	})
	// Debug, not info: an application may take and release an advisory
	// lock, or make and drop a temporary table, in every transaction.
	if added := after &^ before; added != 0 {
		s.log.Debug("client keeps its server while its session holds state only that server has",
			"client", owner.ID, "pinned", added.String(), "pool_mode", owner.Pool.Mode.String())
	} else if after == 0 && before&^circuits.PinChecking != 0 {
		s.log.Debug("client's session holds no state of its server any more: it is unpinned", "client", owner.ID)
	}
	if owner.Settle(s) {
		s.release(owner)
	}
}

// dataRows calls fn with the columns of each DataRow message in rows; it
// reports false if one is malformed or a value is NULL.
func dataRows(rows []byte, fn func(cols [][]byte)) bool {
	var row pgproto3.DataRow
	for len(rows) > 0 {
		typ, size, ok := wire.Header(rows)
		if !ok || typ != 'D' || size > len(rows) || row.Decode(rows[5:size]) != nil ||
			slices.ContainsFunc(row.Values, func(v []byte) bool { return v == nil }) {
			return false
		}
		fn(row.Values)
		rows = rows[size:]
	}
	return true
}

// parseSettings reads settingsSQL's rows.
func parseSettings(rows []byte) (map[string]string, bool) {
	settings := map[string]string{}
	ok := dataRows(rows, func(cols [][]byte) {
		if len(cols) == 2 {
			settings[string(cols[0])] = string(cols[1])
		}
	})
	return settings, ok
}

// parsePins reads checkSQL's one row.
func parsePins(rows []byte) (circuits.Pins, bool) {
	var found circuits.Pins
	n := 0
	ok := dataRows(rows, func(cols [][]byte) {
		n++
		if len(cols) != len(checkedPins) {
			n = -1
			return
		}
		for i, v := range cols {
			switch string(v) {
			case "t":
				found |= checkedPins[i]
			case "f":
			default:
				n = -1
			}
		}
	})
	return found, ok && n == 1
}
