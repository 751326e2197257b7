package config

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/tagbridge/tagbridge/config/filecheck"
	"github.com/tagbridge/tagbridge/config/yamlfile"
)

// Defaults of a PLC's commands; config.example.yaml shows each of them.
const (
	DefaultCommandExpiry    = 5 * time.Second
	DefaultCommandMaxExpiry = time.Minute
	DefaultReadBack         = ReadBackRead
)

// Read-back modes (plcs[].commands.read_back): how a write is confirmed
// before it is answered.
const (
	ReadBackRead         = "read"         // read the node after the write and report the value
	ReadBackSubscription = "subscription" // wait for the subscription to deliver the new value
	ReadBackNone         = "none"         // answer with the Write service's status alone
)

var readBacks = []string{ReadBackRead, ReadBackSubscription, ReadBackNone}

// BuiltinTypes are the OPC UA built-in type names a method argument may
// have; "[]" after one is an array of it. LocalizedText is there for the
// comment of a condition's Acknowledge and Confirm (Part 9).
var BuiltinTypes = []string{"Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
	"Float", "Double", "String", "DateTime", "ByteString", "LocalizedText"}

// Commands are the writes and method calls a PLC entry takes from MQTT.
// Nothing is written unless a tag says writable: true or a method is
// listed here.
type Commands struct {
	// Expiry is the lifetime of a command that carries no expires.
	Expiry Duration `yaml:"expiry"`
	// MaxExpiry bounds how far ahead a command's expires may lie; a later
	// one is cut to it, which also bounds the memory of ids seen.
	MaxExpiry Duration `yaml:"max_expiry"`
	// SecretEnv or SecretFile hold the key of the HMAC every command must
	// then carry.
	SecretEnv  string   `yaml:"secret_env"`
	SecretFile string   `yaml:"secret_file"`
	ReadBack   string   `yaml:"read_back"`
	Methods    []Method `yaml:"methods"`

	// Secret is read from SecretEnv or SecretFile at load time.
	Secret Secret `yaml:"-"`
}

// Method is an OPC UA method that may be called from MQTT.
type Method struct {
	Name   string   `yaml:"name"`
	Object NodeID   `yaml:"object"`
	Method NodeID   `yaml:"method"`
	Args   []string `yaml:"args"` // built-in type names, in order; "Double[]" for an array
}

// WriteLimits bound the values a writable tag takes.
type WriteLimits struct {
	Min       *float64 `yaml:"min"`
	Max       *float64 `yaml:"max"`
	Allowed   []Scalar `yaml:"allowed"`
	MaxLength int      `yaml:"max_length"` // strings: characters; arrays: elements
}

// Scalar is one allowed value: a number, a string or a boolean.
type Scalar struct {
	Value any // float64, string or bool
}

// UnmarshalYAML takes a YAML scalar as a number, boolean or string.
func (s *Scalar) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return yamlfile.ScalarError(n, "expected a number, string or boolean, got %s", yamlfile.DescribeNode(n))
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return yamlfile.ScalarError(n, "%q is not a number", n.Value)
		}
		s.Value = f
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return yamlfile.ScalarError(n, "%q is not a boolean", n.Value)
		}
		s.Value = b
	case "!!null":
		return yamlfile.ScalarError(n, "expected a number, string or boolean, got null")
	default:
		s.Value = n.Value
	}
	return nil
}

// MarshalYAML writes the value back.
func (s Scalar) MarshalYAML() (any, error) { return s.Value, nil }

// Writable reports whether any of p's tags may be written or methods called.
func (p *PLC) Writable() bool {
	if len(p.Commands.Methods) > 0 {
		return true
	}
	for _, t := range p.Tags {
		if t.Writable {
			return true
		}
	}
	return false
}

func (c *Commands) applyDefaults() {
	orDuration(&c.Expiry, DefaultCommandExpiry)
	orDuration(&c.MaxExpiry, DefaultCommandMaxExpiry)
	orString(&c.ReadBack, DefaultReadBack)
}

// commands checks a PLC's commands and the write limits of its tags, and
// reads the HMAC key.
func (v *validator) commands(path string, p *PLC) {
	c := &p.Commands
	cp := path + ".commands"
	if c.Expiry <= 0 {
		v.add(cp+".expiry", "must be greater than 0")
	}
	if c.MaxExpiry < c.Expiry {
		v.add(cp+".max_expiry", "max_expiry (%s) must not be less than expiry (%s)", c.MaxExpiry, c.Expiry)
	}
	v.oneOf(cp+".read_back", c.ReadBack, "read-back mode", readBacks)
	if c.SecretEnv != "" && c.SecretFile != "" {
		v.add(cp+".secret_file", "secret_env and secret_file are mutually exclusive")
	} else if c.SecretEnv != "" {
		c.Secret = v.fromEnv(cp+".secret_env", c.SecretEnv)
	} else if c.SecretFile != "" {
		key, err := filecheck.ReadSecret(c.SecretFile)
		switch {
		case err != nil:
			v.add(cp+".secret_file", "cannot read key file %q: %s", c.SecretFile, filecheck.Reason(err))
		case key == "":
			v.add(cp+".secret_file", "key file %q is empty", c.SecretFile)
		}
		c.Secret = Secret(key)
	}
	if c.Secret != "" && len(c.Secret) < MinCommandSecret {
		key := cp + ".secret_file"
		if c.SecretEnv != "" {
			key = cp + ".secret_env"
		}
		v.add(key, "the key must be at least %d bytes", MinCommandSecret)
	}
	tags := map[string]bool{}
	for _, t := range p.Tags {
		tags[t.Name] = true
	}
	names := map[string]int{}
	for i := range c.Methods {
		m := &c.Methods[i]
		mp := fmt.Sprintf("%s.methods[%d]", cp, i)
		if first, dup := names[m.Name]; dup && m.Name != "" {
			v.add(mp+".name", "duplicate method name %q (first at line %d)", m.Name, v.line(fmt.Sprintf("%s.methods[%d].name", cp, first)))
		} else {
			names[m.Name] = i
			v.topicLevel(mp+".name", m.Name)
			if tags[m.Name] {
				v.add(mp+".name", "%q is also a tag name: a method's topic must differ from every tag's", m.Name)
			}
		}
		if m.Object.Raw == "" {
			v.add(mp+".object", "required (the node id of the object the method belongs to)")
		}
		if m.Method.Raw == "" {
			v.add(mp+".method", "required (the node id of the method)")
		}
		for j, a := range m.Args {
			if !slices.Contains(BuiltinTypes, strings.TrimSuffix(a, "[]")) {
				v.add(fmt.Sprintf("%s.args[%d]", mp, j), "%q is not a built-in type (%s, or one of them with [] for an array)", a, orList(BuiltinTypes))
			}
		}
	}
	for j := range p.Tags {
		v.writeLimits(fmt.Sprintf("%s.tags[%d]", path, j), &p.Tags[j])
	}
}

// MinCommandSecret is the shortest HMAC key accepted.
const MinCommandSecret = 16

func (v *validator) writeLimits(path string, t *Tag) {
	w := t.Write
	if w == nil {
		return
	}
	if !t.Writable {
		v.add(path+".write", "write limits apply only to a tag with writable: true")
	}
	for _, b := range []struct {
		key string
		val *float64
	}{{"min", w.Min}, {"max", w.Max}} {
		if b.val != nil && (math.IsNaN(*b.val) || math.IsInf(*b.val, 0)) {
			v.add(path+".write."+b.key, "must be a finite number")
		}
	}
	if w.Min != nil && w.Max != nil && *w.Min > *w.Max {
		v.add(path+".write.max", "max (%g) must not be less than min (%g)", *w.Max, *w.Min)
	}
	if w.MaxLength < 0 {
		v.add(path+".write.max_length", "must not be negative, got %d", w.MaxLength)
	}
	for i, a := range w.Allowed {
		if s, ok := a.Value.(string); ok && !utf8.ValidString(s) {
			v.add(fmt.Sprintf("%s.write.allowed[%d]", path, i), "must be valid UTF-8")
		}
	}
}
