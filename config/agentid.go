package config

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
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
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&c); err != nil && err != io.EOF {
		return "", Errors{syntaxError(path, data, err)}
	}
	if c.Agent.ID == "" {
		return "", Errors{{File: path, Path: "agent.id", Msg: "required"}}
	}
	return c.Agent.ID, nil
}
