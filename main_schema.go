package main

import (
	"fmt"
	"io"

	"github.com/tagbridge/tagbridge/config"
)

const schemaUsage = `schema

Prints the JSON Schema of the configuration file, made from the program's
own configuration types: for editors' YAML language servers (the package
installs it as /usr/share/tagbridge/config.schema.json).`

func cmdSchema(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("schema", schemaUsage, stderr)
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	doc, err := config.JSONSchema()
	if err != nil {
		fmt.Fprintf(stderr, "tagbridge schema: %v\n", err)
		return exitRuntime
	}
	fmt.Fprintf(stdout, "%s\n", doc)
	return exitOK
}
