package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Clause is one comparison of an event stream's where: Field (a browse
// path such as "Severity" or "ActiveState/Id", or "type") Op Value.
type Clause struct {
	Field string
	Op    string // =, <, <=, >, >=
	Value any    // int64, float64, string, or a NodeID for "type"
}

// ParseWhere reads the small where syntax of event streams: comparisons
// joined by "and", each
//
//	<field> <op> <literal>   Severity >= 500, SourceName = 'Tank1', Retain = true
//	type = <node id>          the event is of that type or a subtype
//
// with <op> one of = < <= > >= (OPC UA filters have no "not equal") and <literal> a number, true, false or a
// string in single quotes (” for a quote inside). "" is no filter.
func ParseWhere(s string) ([]Clause, error) {
	var out []Clause
	rest := strings.TrimSpace(s)
	for rest != "" {
		c, tail, err := parseClause(rest)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
		rest = strings.TrimSpace(tail)
		if rest == "" {
			break
		}
		if len(rest) < 4 || !strings.EqualFold(rest[:4], "and ") {
			return nil, fmt.Errorf("where: %q: want \"and\" between comparisons", rest)
		}
		rest = strings.TrimSpace(rest[4:])
		if rest == "" {
			return nil, fmt.Errorf("where: a comparison must follow \"and\"")
		}
	}
	return out, nil
}

func parseClause(s string) (Clause, string, error) {
	i := strings.IndexAny(s, "=!<> ")
	if i <= 0 {
		return Clause{}, "", fmt.Errorf("where: %q: want <field> <op> <value>", s)
	}
	c := Clause{Field: s[:i]}
	s = strings.TrimLeft(s[i:], " ")
	for _, op := range []string{"<=", ">=", "=", "<", ">"} {
		if strings.HasPrefix(s, op) {
			c.Op = op
			s = strings.TrimLeft(s[len(op):], " ")
			break
		}
	}
	if c.Op == "" {
		return Clause{}, "", fmt.Errorf("where: %s: want one of = < <= > >= after the field", c.Field)
	}
	if strings.HasPrefix(s, "'") {
		var b strings.Builder
		for j := 1; j < len(s); j++ {
			if s[j] != '\'' {
				b.WriteByte(s[j])
				continue
			}
			if j+1 < len(s) && s[j+1] == '\'' {
				b.WriteByte('\'')
				j++
				continue
			}
			c.Value = b.String()
			return c, s[j+1:], nil
		}
		return Clause{}, "", fmt.Errorf("where: %s: unterminated string", c.Field)
	}
	lit, tail, _ := strings.Cut(s, " ")
	if lit == "" {
		return Clause{}, "", fmt.Errorf("where: %s %s: missing value", c.Field, c.Op)
	}
	if strings.EqualFold(c.Field, "type") {
		if c.Op != "=" {
			return Clause{}, "", fmt.Errorf("where: type: only = (of that type or a subtype)")
		}
		id, err := ParseNodeID(lit)
		if err != nil {
			return Clause{}, "", fmt.Errorf("where: type: %w", err)
		}
		c.Field, c.Value = "type", id
		return c, tail, nil
	}
	switch {
	case lit == "true" || lit == "false":
		c.Value = lit == "true"
	default:
		if n, err := strconv.ParseInt(lit, 10, 64); err == nil {
			c.Value = n
		} else if f, err := strconv.ParseFloat(lit, 64); err == nil {
			c.Value = f
		} else {
			return Clause{}, "", fmt.Errorf("where: %s %s %s: not a number, true, false or a 'string'", c.Field, c.Op, lit)
		}
	}
	return c, tail, nil
}
