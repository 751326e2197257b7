package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/tagbridge/tagbridge/agent/statusapi"
)

// printCertificates lists the certificates and CRLs the PLC entries depend
// on, the earliest expiry first, marking those within the warning period.
func printCertificates(w io.Writer, s statusapi.Status) {
	if len(s.Certificates) == 0 {
		return
	}
	list := slices.Clone(s.Certificates)
	slices.SortStableFunc(list, func(a, b statusapi.Certificate) int { return a.NotAfter.Compare(b.NotAfter) })
	fmt.Fprintf(w, "\ncertificates (earliest expiry first):\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PLC\tROLE\tSUBJECT\tEXPIRES")
	for _, c := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.PLC, c.Role, c.Subject, expiresIn(s.Time, c.NotAfter))
	}
	tw.Flush()
}

// expiresIn is the date and how far away it is, upper case when within
// the warning period or past.
func expiresIn(now, t time.Time) string {
	days := int(t.Sub(now).Hours() / 24)
	date := t.Local().Format("2006-01-02")
	switch left := t.Sub(now); {
	case left <= 0:
		return fmt.Sprintf("%s EXPIRED %d days ago", date, -days)
	case left < statusapi.ExpiryWarning:
		return fmt.Sprintf("%s SOON: in %d days", date, days)
	}
	return fmt.Sprintf("%s in %d days", date, days)
}
