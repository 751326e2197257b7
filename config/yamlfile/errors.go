package yamlfile

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a configuration file, rendered as FILE:LINE: path: message.
type Error struct {
	File string
	Line int    // 0 when unknown
	Path string // e.g. plcs[2].tags[5].node; "" when the problem has no place
	Msg  string
}

func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a configuration, in line order.
type Errors []Error

// MaxShown is how many problems Errors.Error lists before it only counts
// the rest: a generated file with a typo on every tag should not bury the
// terminal under tens of thousands of lines that say the same thing.
const MaxShown = 100

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es[:min(len(es), MaxShown)] {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	if len(es) > MaxShown {
		fmt.Fprintf(&b, "\n... and %d more", len(es)-MaxShown)
	}
	return b.String()
}

// SortByLine orders es by line, keeping the order of problems on one line.
func (es Errors) SortByLine() {
	slices.SortStableFunc(es, func(a, b Error) int { return a.Line - b.Line })
}
