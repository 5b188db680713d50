// Package circuits holds a client's virtual session and the pooling rules:
// when a circuit may let its shared server go, and which session settings
// must follow it onto the next one. Pure logic: no I/O, no locks (the caller
// holds the lock of the client the circuit belongs to).
package circuits

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Mode is a pool's pooling mode. A byte, so that it packs with a
// Circuit's other small fields (queue.Client's size class).
type Mode uint8

const (
	Session Mode = iota
	Transaction
	Statement
)

func (m Mode) String() string {
	switch m {
	case Session:
		return "session"
	case Transaction:
		return "transaction"
	case Statement:
		return "statement"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode reads a mode name from the config.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "session":
		return Session, nil
	case "transaction":
		return Transaction, nil
	case "statement":
		return Statement, nil
	}
	return 0, fmt.Errorf("unknown pool mode %q (session, transaction or statement)", s)
}

// Transaction status bytes of ReadyForQuery.
const (
	TxIdle   = 'I'
	TxInTx   = 'T'
	TxFailed = 'E'
)

// Circuit is one client's session as the pooler sees it. An idle
// client holds little more than this struct: thousands of them are
// mostly their circuits, so the maps are made only once they have
// something to hold.
type Circuit struct {
	// outstanding counts requests (Query, Sync, FunctionCall) sent to a
	// server whose ReadyForQuery has not come back yet. Erring high only
	// keeps a server bound longer; it must never err low.
	outstanding int32
	Mode        Mode
	// TxStatus is the status of the last ReadyForQuery the client was sent.
	TxStatus byte
	// openExtended: extended-protocol messages were sent since the last
	// Sync, so the server holds an unnamed statement/portal for us.
	openExtended bool
	// pins: the session holds state only its server has (Pins), so it
	// keeps that server while any is left, in any mode.
	pins Pins
	// login holds the GUCs this client asked for (startup packet, options
	// -c, reported parameters it SET since, and what ReplaceSettings read
	// back from its backend), keyed by lower-case name,
	// and the server's ParameterStatus set it was told at login (shared
	// with the pool's other clients); nil while there are neither.
	login *loginSet
	// later is what the client gained since login; nil while it is none.
	later *circuitLater
}

// circuitLater is the part of a circuit only some clients need, kept apart
// so that every idle client is smaller.
type circuitLater struct {
	// reported is what the client has been told through ParameterStatus
	// since login, where it differs from the login set (toldAtLogin:
	// the server's set, with the client's own settings over it while they
	// are the login set).
	reported map[string]string
	// statements are the client's named prepared statements (protocol
	// level): name → the Parse message that made it, so that any server
	// can be given it before the client uses it there.
	statements map[string]string
	// startup is the login set's settings (shared, read-only) once the
	// circuit has its own copy: what a RESET returns a parameter to.
	startup map[string]string
}

// reported returns what the client was told of name since login.
func (c *Circuit) reported(name string) (string, bool) {
	if c.later == nil {
		return "", false
	}
	v, ok := c.later.reported[name]
	return v, ok
}

// ownSettings reports whether login is this circuit's own copy (made at
// its first SET, with an empty key), not a login set it shares with the
// clients that logged in like it.
func (c *Circuit) ownSettings() bool { return c.login != nil && c.login.key == (loginKey{}) }

// laterFields returns c.later, making it if need be.
func (c *Circuit) laterFields() *circuitLater {
	if c.later == nil {
		c.later = &circuitLater{}
	}
	return c.later
}

// New makes a circuit for a client that logged in with these settings.
func New(mode Mode, settings map[string]string) *Circuit {
	return &Circuit{Mode: mode, TxStatus: TxIdle, login: internSettings(settings)}
}

// setting records a setting the client made.
func (c *Circuit) setting(name, value string) {
	c.ownCopy()
	c.login.settings[strings.ToLower(name)] = value
}

// ReplaceSettings makes settings (lower-case names) the client's
// settings: what its backend says the session has set, after the client
// SET or RESET parameters PostgreSQL does not report. A parameter the
// client logged in with and that is not in settings was RESET: it goes
// back to its login value, as RESET does on a direct connection.
func (c *Circuit) ReplaceSettings(settings map[string]string) {
	c.ownCopy()
	clear(c.login.settings)
	if c.later != nil {
		maps.Copy(c.login.settings, c.later.startup)
	}
	maps.Copy(c.login.settings, settings)
}

// ownCopy gives the circuit a copy of its login set to change, the first
// time (the login overrides are moved into reported first, as
// toldAtLogin reads them from the login set).
func (c *Circuit) ownCopy() {
	if !c.ownSettings() {
		for param, v := range c.login.told() {
			if s, ok := c.login.get(strings.ToLower(param)); ok && s != v {
				if _, changed := c.reported(param); !changed {
					c.putReported(param, s)
				}
			}
		}
		own := &loginSet{settings: map[string]string{}, reported: c.login.told()}
		if c.login != nil {
			maps.Copy(own.settings, c.login.settings)
			if len(c.login.settings) > 0 {
				c.laterFields().startup = c.login.settings
			}
		}
		c.login = own
	}
}

// FromClient records a message the client sent, by type byte.
func (c *Circuit) FromClient(typ byte) {
	switch typ {
	case 'Q', 'F':
		c.outstanding++
	case 'S':
		c.outstanding++
		c.openExtended = false
	case 'P', 'B', 'D', 'E', 'C', 'H':
		c.openExtended = true
	}
}

// Ready records a ReadyForQuery from the server.
func (c *Circuit) Ready(status byte) {
	if c.outstanding > 0 {
		c.outstanding--
	}
	c.TxStatus = status
}

// Idle reports that nothing is in flight and no transaction is open: the
// session is between transactions.
func (c *Circuit) Idle() bool {
	return c.outstanding == 0 && !c.openExtended && c.TxStatus == TxIdle
}

// Busy reports that a request's reply has not fully come back yet.
func (c *Circuit) Busy() bool { return c.outstanding > 0 }

// Releasable reports whether the circuit's server may go back to the pool
// now (the caller also checks that no request bytes wait in the inbox).
func (c *Circuit) Releasable() bool {
	return c.Mode != Session && c.pins == 0 && c.Idle()
}

// Pins names the session state that only the circuit's server holds, and
// that keeps the circuit on that server while any is left.
type Pins uint8

const (
	PinListen   Pins = 1 << iota // LISTEN
	PinPrepare                   // SQL PREPARE
	PinCursor                    // a WITH HOLD cursor
	PinTemp                      // a temporary table, view or sequence
	PinAdvisory                  // a session-level advisory lock
	PinLoad                      // LOAD: a library stays loaded for good
	PinSetting                   // a SET pgmts could not read back
	// PinChecking holds the server while it asks its backend which state
	// the session still holds (see SetPins).
	PinChecking

	// Checked is what a backend can be asked about; LOAD cannot be undone.
	Checked = PinListen | PinPrepare | PinCursor | PinTemp | PinAdvisory
)

var pinNames = [...]string{"LISTEN", "SQL PREPARE", "WITH HOLD cursor", "temporary table", "advisory lock", "LOAD", "SET",
	"checking session state"}

// String lists the pins, comma-separated.
func (p Pins) String() string {
	var names []string
	for i, name := range pinNames {
		if p&(1<<i) != 0 {
			names = append(names, name)
		}
	}
	return strings.Join(names, ", ")
}

// Pin adds pins and returns those that are new. Session mode keeps the
// server anyway, so a session circuit is never pinned.
func (c *Circuit) Pin(p Pins) (added Pins) {
	if c.Mode == Session {
		return 0
	}
	added = p &^ c.pins
	c.pins |= p
	return added
}

// SetPins records what the backend said the session still holds (found,
// within Checked), and ends PinChecking; LOAD and SET stay.
func (c *Circuit) SetPins(found Pins) {
	if c.Mode == Session {
		return
	}
	c.pins = found&Checked | c.pins&(PinLoad|PinSetting)
}

// Pins returns what pins the circuit to its server.
func (c *Circuit) Pins() Pins { return c.pins }

// Pinned reports whether anything pins the circuit to its server.
func (c *Circuit) Pinned() bool { return c.pins != 0 }

// Refuses reports whether a ReadyForQuery with this transaction status
// breaks the mode's promise (a transaction block in statement mode).
func Refuses(mode Mode, status byte) bool {
	return mode == Statement && status != TxIdle
}

// Reported records a ParameterStatus and tells whether the client must be
// sent it (its value differs from what the client last saw). A reported
// change also becomes one of the client's settings, so it follows the
// client onto other servers.
func (c *Circuit) Reported(name, value string, fromClient bool) bool {
	if fromClient {
		c.setting(name, value)
	}
	old, ok := c.reported(name)
	if !ok {
		old, ok = c.toldAtLogin(name)
	}
	if ok && old == value {
		return false
	}
	c.SetReported(name, value)
	return true
}

// toldAtLogin is what the client was told of name at login: the
// server's value, or the client's own setting while the circuit still
// holds its login set.
func (c *Circuit) toldAtLogin(name string) (string, bool) {
	v, ok := c.login.told()[name]
	if ok && !c.ownSettings() && len(c.login.settings) > 0 {
		if s, set := c.login.get(strings.ToLower(name)); set {
			return s, true
		}
	}
	return v, ok
}

// SetLoginReported seeds what the client was told at login with the
// server's ParameterStatus set. The circuit keeps params itself (many
// clients share one), so nobody may write to it afterwards.
func (c *Circuit) SetLoginReported(params map[string]string) {
	if c.ownSettings() {
		c.login.reported = params
		return
	}
	c.login = c.login.withReported(params)
}

// SetReported records that the client was told name = value.
func (c *Circuit) SetReported(name, value string) {
	if v, ok := c.toldAtLogin(name); ok && v == value {
		if c.later != nil {
			delete(c.later.reported, name)
		}
		return
	}
	c.putReported(name, value)
}

func (c *Circuit) putReported(name, value string) {
	l := c.laterFields()
	if l.reported == nil {
		l.reported = map[string]string{}
	}
	l.reported[name] = value
}

// Settings returns the client's settings (read-only for callers, and
// possibly shared with other clients; nil when there are none).
func (c *Circuit) Settings() map[string]string {
	if c.login == nil {
		return nil
	}
	return c.login.settings
}

// SettingsKey returns a canonical form of the client's settings, and true
// while they are a shared login set (which nobody writes): a server that
// last took its settings from a set with the same key carries them
// already, which one string comparison tells. False once the client
// changed a setting.
func (c *Circuit) SettingsKey() (string, bool) {
	if c.ownSettings() {
		return "", false
	}
	if c.login == nil {
		return "", true
	}
	return c.login.key.settings, true
}

// Statements returns the client's named prepared statements (nil while
// there are none), for the serving server to read, and delete from, as it
// writes the client's messages.
func (c *Circuit) Statements() map[string]string {
	if c.later == nil {
		return nil
	}
	return c.later.statements
}

// SetStatement records the Parse message that made the named statement.
func (c *Circuit) SetStatement(name, parse string) {
	l := c.laterFields()
	if l.statements == nil {
		l.statements = map[string]string{}
	}
	l.statements[name] = parse
}

// SettingsDiff returns what must run on a server whose pgmts-made settings
// are have, so that it carries exactly want: names to set (with values) and
// names to reset, both sorted for a stable statement.
func SettingsDiff(have, want map[string]string) (set [][2]string, reset []string) {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			set = append(set, [2]string{k, v})
		}
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			reset = append(reset, k)
		}
	}
	slices.SortFunc(set, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	slices.Sort(reset)
	return set, reset
}

// SettingsSQL renders SettingsDiff's result as one simple-protocol query.
// set_config takes any GUC name as a string, so names need no quoting
// rules of their own; values are E'...' literals, safe whatever
// standard_conforming_strings says.
func SettingsSQL(set [][2]string, reset []string) string {
	var b strings.Builder
	for _, kv := range set {
		fmt.Fprintf(&b, "SELECT pg_catalog.set_config(%s, %s, false);", literal(kv[0]), literal(kv[1]))
	}
	for _, k := range reset {
		// RESET goes back to the server's own default for the session.
		fmt.Fprintf(&b, "RESET %s;", identifierPath(k))
	}
	return b.String()
}

func literal(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `'`, `''`)
	return "E'" + s + "'"
}

// identifierPath quotes a GUC name, which may be a dotted custom name.
func identifierPath(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
	}
	return strings.Join(parts, ".")
}
