// Package sparkplugb is the Sparkplug B payload as generated protobuf code
// (see sparkplug_b.proto; regenerate with gen.sh, or go generate).
//
// tagbridge encodes Sparkplug B by hand (payload/sparkplug.go, with
// protowire); this generated code is the independent decoder its tests use.
package sparkplugb

//go:generate ./gen.sh
