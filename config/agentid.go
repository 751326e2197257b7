package config

import (
	"fmt"
	"os"

	"github.com/tagbridge/tagbridge/config/yamlfile"
)

// ReadAgentID returns agent.id from the file at path without loading or
// validating the rest: `tagbridge certs create` needs it before the
// certificate files the configuration names exist.
func ReadAgentID(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read config: %w", err)
	}
	var c struct {
		Agent struct {
			ID string `yaml:"id"`
		} `yaml:"agent"`
	}
	_, root, perrs := yamlfile.Parse(path, data)
	if perrs != nil {
		return "", perrs
	}
	if root.Kind != 0 {
		if err := root.Decode(&c); err != nil {
			return "", Errors{yamlfile.SyntaxError(path, data, err)}
		}
	}
	if c.Agent.ID == "" {
		return "", Errors{{File: path, Path: "agent.id", Msg: "required"}}
	}
	return c.Agent.ID, nil
}
