package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/tagbridge/tagbridge/agent/statusapi"
	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua"
)

// printPLCsNarrow is the PLC table in 80 columns: what an operator looks
// at first. The endpoint and security follow it, one line per PLC.
func printPLCsNarrow(w io.Writer, s statusapi.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PLC\tSTATE\tSINCE\tTAGS OK/BAD\tVALUES/S\tRECONNECTS\tCLOCK")
	for _, p := range s.PLCs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%.1f\t%d\t%s\n",
			p.PLC, p.State, ago(s.Time, p.Since), p.TagsOK, p.TagsFailed, p.ValuesPerSec, p.Reconnects, clockOffset(p))
	}
	tw.Flush()
}

// printPLCsWide is every column, for --wide.
func printPLCsWide(w io.Writer, s statusapi.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PLC\tSTATE\tSINCE\tENDPOINT\tSECURITY\tCHANNEL/TOKEN\tRENEWALS (FAILED)\tLAST RENEWAL\tRECONNECTS\tTAGS OK/FAILED\tVALUES/S\tCLOCK OFFSET")
	for _, p := range s.PLCs {
		link := opcua.LinkOf(p)
		channel := "-"
		if link.ChannelID != 0 {
			channel = fmt.Sprintf("%d/%d", link.ChannelID, link.TokenID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d (%d)\t%s\t%d\t%d/%d\t%.1f\t%s\n",
			p.PLC, p.State, ago(s.Time, p.Since), p.Endpoint, dash(link.Security()), channel,
			link.TokenRenewals, link.TokenRenewalFailures, ago(s.Time, link.LastRenewal), p.Reconnects,
			p.TagsOK, p.TagsFailed, p.ValuesPerSec, clockOffset(p))
	}
	tw.Flush()
}

// clockOffset is "-" for a PLC whose clock was never read (never
// connected: an offset of 0 would be a claim).
func clockOffset(p collectors.PLCState) string {
	if p.ClockOffsetSeconds == 0 && (p.State != collectors.StateStreaming || opcua.LinkOf(p).ChannelID == 0) {
		return "-"
	}
	return fmt.Sprintf("%+.3fs", p.ClockOffsetSeconds)
}

// nextAttempt says when a PLC not streaming is tried again, or "".
func nextAttempt(now time.Time, p collectors.PLCState) string {
	if p.NextAttempt.IsZero() || p.State == collectors.StateStreaming {
		return ""
	}
	d := p.NextAttempt.Sub(now).Round(time.Second)
	if d <= 0 {
		return p.PLC + ": connecting now"
	}
	return fmt.Sprintf("%s: next attempt in %s", p.PLC, d)
}
