#!/bin/sh
# Regenerates sparkplug_b.pb.go from sparkplug_b.proto. Versions as committed:
#   protoc 3.21.12 (Debian 12: apt-get install -y protobuf-compiler)
#   protoc-gen-go v1.36.12, matching google.golang.org/protobuf in go.mod:
#     go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
set -eu
cd "$(dirname "$0")"
protoc --proto_path=. --go_out=. --go_opt=paths=source_relative sparkplug_b.proto
