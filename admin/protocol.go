package admin

import (
	"bytes"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgmts/pgmts/wire"
)

// session is one console client's protocol state, kept across requests:
// its prepared statements and portals (pgx caches named statements), and
// whether an extended-protocol error makes it skip to the next Sync.
type session struct {
	admin   bool // admin_users may run every command; stats_users SHOW only
	stmts   map[string]command
	portals map[string]portal
	failed  bool
	// after runs once the replies of the current batch are pushed.
	after []func()
}

type portal struct {
	cmd     command
	formats []int16
}

func newSession(admin bool) *session {
	return &session{admin: admin, stmts: map[string]command{}, portals: map[string]portal{}}
}

// handle answers a batch of whole client messages. It returns the reply
// bytes and how many ReadyForQuery messages they hold (one per Query,
// Sync and FunctionCall, which is what the circuit counts).
func (c *Console) handle(s *session, data []byte) (out []byte, readies int) {
	for len(data) >= 5 {
		typ, size, _ := wire.Header(data)
		if size > len(data) {
			break // the dispatcher submits whole messages only
		}
		body := data[5:size]
		data = data[size:]
		switch typ {
		case 'Q':
			out = c.simpleQuery(s, out, cstring(body))
			out = append(out, wire.ReadyIdle...)
			readies++
			continue
		case 'S':
			s.failed = false
			delete(s.portals, "")
			out = append(out, wire.ReadyIdle...)
			readies++
			continue
		case 'F':
			out = consoleError("0A000", "function calls are not supported by the admin console").Encode(out)
			out = append(out, wire.ReadyIdle...)
			readies++
			continue
		case 'H':
			continue // every batch's replies are sent at its end anyway
		}
		if s.failed {
			continue
		}
		var werr *wire.Error
		out, werr = c.extended(s, out, typ, body)
		if werr != nil {
			out = werr.Encode(out)
			s.failed = true
		}
	}
	return out, readies
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

func (c *Console) simpleQuery(s *session, out []byte, sql string) []byte {
	cmd, werr := parse(sql)
	if werr == nil && cmd.verb == "" {
		return wire.Append(out, &pgproto3.EmptyQueryResponse{})
	}
	var res *result
	if werr == nil {
		res, werr = c.execute(cmd, s.admin)
	}
	if werr != nil {
		return werr.Encode(out)
	}
	s.later(res)
	return res.encode(out, true, nil)
}

// decode reads an extended-protocol message other than Sync and Flush.
func decode(typ byte, body []byte) (pgproto3.FrontendMessage, *wire.Error) {
	var m pgproto3.FrontendMessage
	switch typ {
	case 'P':
		m = &pgproto3.Parse{}
	case 'B':
		m = &pgproto3.Bind{}
	case 'D':
		m = &pgproto3.Describe{}
	case 'E':
		m = &pgproto3.Execute{}
	case 'C':
		m = &pgproto3.Close{}
	default:
		return nil, consoleError("08P01", "unexpected message type %q on the admin console", typ)
	}
	if m.Decode(body) != nil {
		return nil, consoleError("08P01", "malformed message of type %q", typ)
	}
	return m, nil
}

func (s *session) statement(name string) (command, *wire.Error) {
	cmd, ok := s.stmts[name]
	if !ok {
		return command{}, consoleError("26000", "prepared statement %q does not exist", name)
	}
	return cmd, nil
}

func (s *session) portal(name string) (portal, *wire.Error) {
	p, ok := s.portals[name]
	if !ok {
		return portal{}, consoleError("34000", "portal %q does not exist", name)
	}
	return p, nil
}

// extended answers one extended-protocol message other than Sync and Flush.
func (c *Console) extended(s *session, out []byte, typ byte, body []byte) ([]byte, *wire.Error) {
	msg, werr := decode(typ, body)
	if werr != nil {
		return out, werr
	}
	switch m := msg.(type) {
	case *pgproto3.Parse:
		if _, ok := s.stmts[m.Name]; ok && m.Name != "" {
			return out, consoleError("42P05", "prepared statement %q already exists", m.Name)
		}
		cmd, werr := parse(m.Query)
		if werr != nil {
			return out, werr
		}
		s.stmts[m.Name] = cmd
		return wire.Append(out, &pgproto3.ParseComplete{}), nil
	case *pgproto3.Bind:
		cmd, werr := s.statement(m.PreparedStatement)
		if werr != nil {
			return out, werr
		}
		if len(m.Parameters) > 0 {
			return out, consoleError("08P01", "bind message supplies %d parameters, but console commands take none", len(m.Parameters))
		}
		s.portals[m.DestinationPortal] = portal{cmd: cmd, formats: m.ResultFormatCodes}
		return wire.Append(out, &pgproto3.BindComplete{}), nil
	case *pgproto3.Describe:
		var p portal
		if m.ObjectType == 'S' {
			if p.cmd, werr = s.statement(m.Name); werr != nil {
				return out, werr
			}
			out = wire.Append(out, &pgproto3.ParameterDescription{})
		} else if p, werr = s.portal(m.Name); werr != nil {
			return out, werr
		}
		if cols := describe(p.cmd); cols != nil {
			return rowDescription(out, cols, p.formats), nil
		}
		return wire.Append(out, &pgproto3.NoData{}), nil
	case *pgproto3.Execute:
		p, werr := s.portal(m.Portal)
		if werr != nil {
			return out, werr
		}
		if p.cmd.verb == "" {
			return wire.Append(out, &pgproto3.EmptyQueryResponse{}), nil
		}
		res, werr := c.execute(p.cmd, s.admin)
		if werr != nil {
			return out, werr
		}
		s.later(res)
		return res.encode(out, false, p.formats), nil
	case *pgproto3.Close:
		if m.ObjectType == 'S' {
			delete(s.stmts, m.Name)
		} else {
			delete(s.portals, m.Name)
		}
		return wire.Append(out, &pgproto3.CloseComplete{}), nil
	}
	return out, nil
}

// later keeps what res wants done once its reply is on its way.
func (s *session) later(res *result) {
	if res.after != nil {
		s.after = append(s.after, res.after)
	}
}
