package config

import "testing"

func TestExampleLoads(t *testing.T) {
	c, err := Load("../config.example.yaml")
	if err != nil {
		t.Fatalf("config.example.yaml:\n%v", err)
	}
	if got := c.TagCount(); got != 5 {
		t.Errorf("TagCount() = %d, want 5", got)
	}
}
