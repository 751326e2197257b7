package config

import (
	"fmt"
	"os"

	"github.com/tagbridge/tagbridge/config/yamlfile"
)

// Load reads, decodes, defaults and validates the configuration at path.
// Problems in the file come back as Errors, all of them at once; a file that
// cannot be read is a plain wrapped error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for bytes already read; file names them in errors.
func Parse(file string, data []byte) (*Config, error) {
	if c, ok := parseInParts(file, data); ok {
		return c, nil
	}
	return parseWhole(file, data)
}

// parseWhole decodes and checks the file in one piece: the reference that
// parseInParts must agree with, and the one that reports every problem.
func parseWhole(file string, data []byte) (*Config, error) {
	c := &Config{File: file}
	root, errs, skip := yamlfile.Decode(file, data, c) // skip: paths whose validation a decode error makes moot
	if root == nil {
		return nil, errs
	}
	c.root = root
	c.applyDefaults()
	var verrs Errors
	if err := c.Validate(); err != nil {
		verrs = err.(Errors)
	}
	for _, e := range verrs {
		if !skip.Covers(e.Path) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		errs.SortByLine()
		return nil, errs
	}
	// Line numbers are needed only while loading; the node tree of a large
	// tag list takes some 900 bytes per tag for as long as the agent runs.
	c.root = nil
	return c, nil
}

// Error is one problem in a configuration file, rendered as FILE:LINE: path: message.
type Error = yamlfile.Error

// Errors is every problem found in a configuration, in line order.
type Errors = yamlfile.Errors

// MaxShown is how many problems Errors.Error lists before it only counts the rest.
const MaxShown = yamlfile.MaxShown
