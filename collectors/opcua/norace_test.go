//go:build !race

package opcua

// raceEnabled tells tests that the race detector is on.
const raceEnabled = false
