package admin

import (
	"fmt"
	"strings"

	"github.com/pgmts/pgmts/wire"
)

// command is one parsed console statement. Words are case-insensitive,
// a trailing semicolon is optional, as in PgBouncer.
type command struct {
	verb string // upper case: SHOW, PAUSE, SET, ...; "" for an empty query
	// arg is SHOW's subject in upper case, or the argument as written
	// (a database name, a client id, WAIT_FOR_CLIENTS).
	arg        string
	key, value string // SET key = value
	db         string // SET db.key = value: the database whose pool settings change
}

// argRule says whether a control command takes an argument.
type argRule int

const (
	argNone argRule = iota
	argOptional
	argRequired
)

// controls are PgBouncer's commands that change the pooler, and their
// argument.
var controls = map[string]argRule{
	"PAUSE": argOptional, "RESUME": argOptional, "SUSPEND": argNone, "WAIT_CLOSE": argOptional,
	"RECONNECT": argOptional, "KILL": argRequired, "KILL_CLIENT": argRequired,
	"DISABLE": argRequired, "ENABLE": argRequired, "RELOAD": argNone, "SHUTDOWN": argOptional,
}

func consoleError(code, format string, args ...any) *wire.Error {
	return &wire.Error{Severity: "ERROR", Code: code, Message: fmt.Sprintf(format, args...)}
}

// token is a word of a statement; quoted words keep their case.
type token struct {
	text   string
	quoted bool
}

// tokenize splits a statement into words: bare words, "quoted" names
// ("" escapes a quote), 'strings' (” escapes) and "=".
func tokenize(sql string) ([]token, bool) {
	var out []token
	for i := 0; i < len(sql); {
		ch := sql[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			i++
		case ch == '=':
			out = append(out, token{text: "="})
			i++
		case ch == '"' || ch == '\'':
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(sql) {
					return nil, false
				}
				if sql[j] == ch {
					if j+1 < len(sql) && sql[j+1] == ch {
						b.WriteByte(ch)
						j += 2
						continue
					}
					break
				}
				b.WriteByte(sql[j])
				j++
			}
			out = append(out, token{text: b.String(), quoted: true})
			i = j + 1
		default:
			j := i
			for j < len(sql) && !strings.ContainsRune(" \t\n\r=\"'", rune(sql[j])) {
				j++
			}
			out = append(out, token{text: sql[i:j]})
			i = j
		}
	}
	return out, true
}

// parse reads one console statement.
func parse(sql string) (command, *wire.Error) {
	text := strings.TrimSpace(sql)
	for strings.HasSuffix(text, ";") {
		text = strings.TrimSpace(strings.TrimSuffix(text, ";"))
	}
	invalid := consoleError("42601", "invalid command %q, use SHOW HELP;", strings.TrimSpace(sql))
	toks, ok := tokenize(text)
	if !ok {
		return command{}, invalid
	}
	if len(toks) == 0 {
		return command{}, nil
	}
	if toks[0].quoted {
		return command{}, invalid
	}
	cmd := command{verb: strings.ToUpper(toks[0].text)}
	args := toks[1:]
	switch cmd.verb {
	case "SHOW":
		if len(args) != 1 || args[0].quoted {
			return command{}, consoleError("42601", "SHOW needs one subject, e.g. SHOW POOLS; see SHOW HELP")
		}
		cmd.arg = strings.ToUpper(args[0].text)
		if cmd.arg != "HELP" && lookupView(cmd.arg) == nil {
			return command{}, invalid
		}
		return cmd, nil
	case "SET":
		return parseSet(cmd, args)
	}
	rule, ok := controls[cmd.verb]
	if !ok {
		return command{}, invalid
	}
	switch {
	case len(args) > 1:
		return command{}, consoleError("42601", "%s takes at most one argument", cmd.verb)
	case len(args) == 1 && rule == argNone:
		return command{}, consoleError("42601", "%s takes no argument", cmd.verb)
	case len(args) == 0 && rule == argRequired:
		return command{}, consoleError("42601", "%s needs an argument: see SHOW HELP", cmd.verb)
	case len(args) == 1:
		cmd.arg = args[0].text
	}
	if cmd.verb == "SHUTDOWN" && cmd.arg != "" && !strings.EqualFold(cmd.arg, "WAIT_FOR_CLIENTS") {
		return command{}, consoleError("42601", "SHUTDOWN takes only WAIT_FOR_CLIENTS")
	}
	return cmd, nil
}

// parseSet reads SET key = value, and SET db.key = value for a database's
// own pool settings. db may be "quoted" (then it keeps its case and may
// hold dots); unquoted, "pgmts" and "pool" name the global sections, as
// in the config file.
func parseSet(cmd command, args []token) (command, *wire.Error) {
	if len(args) == 4 && args[0].quoted && !args[1].quoted && strings.HasPrefix(args[1].text, ".") {
		cmd.db = args[0].text
		args = append([]token{{text: args[1].text[1:]}}, args[2:]...)
	}
	if len(args) != 3 || args[0].quoted || (args[1].text != "=" && !strings.EqualFold(args[1].text, "to")) || args[1].quoted {
		return command{}, consoleError("42601", "SET needs key = value, or db.key = value")
	}
	cmd.key, cmd.value = strings.ToLower(args[0].text), args[2].text
	if cmd.db == "" {
		if section, name, ok := strings.Cut(cmd.key, "."); ok && section != "pgmts" && section != "pool" {
			cmd.db, cmd.key = section, name
		}
	}
	if cmd.db != "" && (cmd.key == "" || strings.Contains(cmd.key, ".")) {
		return command{}, consoleError("42601", "SET db.key = value needs one setting name after the database")
	}
	return cmd, nil
}
