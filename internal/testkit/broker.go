// The broker harness runs a real Mosquitto broker for tests, and
// subscribes to it.
//
//	b := testkit.StartBroker(t)
//	msgs := testkit.Subscribe(t, b.URL(), "tagbridge/#", 1)
//	// ... publish to b.URL() ...
//	m := <-msgs
//
// The broker is /usr/sbin/mosquitto from the Debian package, run as a child
// process on a free loopback port. It keeps sessions, subscriptions and
// queued messages across Restart, like a production broker with persistence.

package testkit

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

const (
	mosquitto = "/usr/sbin/mosquitto"
	passwd    = "/usr/bin/mosquitto_passwd"
	deadline  = 10 * time.Second
)

// Broker is a running Mosquitto.
type Broker struct {
	t    testing.TB
	dir  string
	port int
	tls  bool
	log  Log // stderr of every run, shown when the test fails

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Option changes how Start configures the broker.
type BrokerOption func(*brokerSettings)

type brokerSettings struct {
	users                       [][2]string
	certFile, keyFile, clientCA string
	extra                       []string
}

// WithConfig adds lines to mosquitto.conf (max_packet_size 4096, acl_file
// FILE, ...).
func WithConfig(lines ...string) BrokerOption {
	return func(s *brokerSettings) { s.extra = append(s.extra, lines...) }
}

// WithUser turns anonymous access off and adds a user with this password.
// The test is skipped if mosquitto_passwd is not installed.
func WithUser(name, password string) BrokerOption {
	return func(s *brokerSettings) { s.users = append(s.users, [2]string{name, password}) }
}

// WithTLS makes the listener TLS only, with this certificate and key (PEM
// files); URL then starts with ssl://. A non-empty clientCAFile makes the
// broker require client certificates signed by it.
func WithTLS(certFile, keyFile, clientCAFile string) BrokerOption {
	return func(s *brokerSettings) { s.certFile, s.keyFile, s.clientCA = certFile, keyFile, clientCAFile }
}

// Start runs Mosquitto until the test ends. It fails the test if Mosquitto
// is not installed or does not accept connections within 10 s.
func StartBroker(t testing.TB, opts ...BrokerOption) *Broker {
	t.Helper()
	if _, err := os.Stat(mosquitto); err != nil {
		t.Fatalf("broker: %v: the tests need Mosquitto (Debian package mosquitto); run them through scripts/test, which installs it", err)
	}
	var s brokerSettings
	for _, o := range opts {
		o(&s)
	}
	b := &Broker{t: t, dir: t.TempDir(), port: Port(t), tls: s.certFile != ""}
	conf := fmt.Sprintf(`listener %d 127.0.0.1
persistence true
persistence_location %s/
autosave_interval 0
max_queued_messages 0
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
`, b.port, b.dir)
	if os.Geteuid() == 0 {
		conf += "user root\n" // else it drops to user mosquitto, who cannot read dir
	}
	if b.tls {
		conf += fmt.Sprintf("certfile %s\nkeyfile %s\n", s.certFile, s.keyFile)
		if s.clientCA != "" {
			conf += fmt.Sprintf("cafile %s\nrequire_certificate true\n", s.clientCA)
		}
	}
	if len(s.users) == 0 {
		conf += "allow_anonymous true\n"
	} else {
		file := filepath.Join(b.dir, "passwd")
		for i, u := range s.users {
			args := []string{"-b", file, u[0], u[1]}
			if i == 0 {
				args = append([]string{"-c"}, args...)
			}
			if _, err := os.Stat(passwd); err != nil {
				t.Skipf("broker: %v: cannot create users without mosquitto_passwd", err)
			}
			if out, err := exec.Command(passwd, args...).CombinedOutput(); err != nil {
				t.Fatalf("broker: mosquitto_passwd: %v\n%s", err, out)
			}
		}
		conf += "allow_anonymous false\npassword_file " + file + "\n"
	}
	for _, l := range s.extra {
		conf += l + "\n"
	}
	if err := os.WriteFile(filepath.Join(b.dir, "mosquitto.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.kill()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", b.log.String())
		}
	})
	b.start()
	return b
}

// URL is the broker's address, "tcp://127.0.0.1:PORT" (ssl:// WithTLS).
func (b *Broker) URL() string {
	if b.tls {
		return "ssl://127.0.0.1:" + strconv.Itoa(b.port)
	}
	return "tcp://127.0.0.1:" + strconv.Itoa(b.port)
}

// Stop shuts the broker down, saving its sessions, and waits until it has exited.
func (b *Broker) Stop() {
	b.t.Helper()
	if b.cmd == nil {
		return
	}
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.t.Fatalf("broker: stop: %v", err)
	}
	select {
	case <-b.exited:
	case <-time.After(deadline):
		b.t.Fatalf("broker: mosquitto did not stop within %v", deadline)
	}
	b.cmd = nil
}

// Restart stops the broker if it is running and starts it again on the same
// port, with the sessions it had.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

func (b *Broker) start() {
	b.t.Helper()
	cmd := exec.Command(mosquitto, "-c", filepath.Join(b.dir, "mosquitto.conf"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("broker: %v", err)
	}
	running := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		// Mosquitto says when its listener is open.
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			b.log.Write([]byte(sc.Text() + "\n"))
			if !seen && strings.Contains(sc.Text(), " running") {
				seen = true
				close(running)
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	b.cmd, b.exited = cmd, exited

	timeout := time.After(deadline)
	select {
	case <-running:
	case <-exited:
		b.t.Fatalf("broker: mosquitto exited at start:\n%s", b.log.String())
	case <-timeout:
		b.t.Fatalf("broker: mosquitto not running within %v:\n%s", deadline, b.log.String())
	}
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(b.port), deadline)
	if err != nil {
		b.t.Fatalf("broker: mosquitto running but not accepting connections: %v\n%s", err, b.log.String())
	}
	conn.Close()
}

func (b *Broker) kill() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Kill()
	<-b.exited
	b.cmd = nil
}

// Message is one message received by Subscribe.
type Message struct {
	Topic    string
	Payload  []byte
	Retained bool // delivered from the broker's retained store on subscribing
	QoS      byte // as delivered: the lower of the publisher's and the subscription's
}

var brokerClients atomic.Int64

// Subscribe connects to the broker at url (user:password@ in the URL is
// used) and subscribes to topic. It returns once the broker has confirmed
// the subscription. Messages arrive on the channel in the order received; it
// is closed when the test ends. The session is persistent and survives
// broker restarts.
//
// It delivers values only: tagbridge's status messages (topics ending in
// /status, see publish) are left out unless topic itself ends in /status.
// SubscribeAll delivers everything.
func Subscribe(t testing.TB, url, topic string, qos byte) <-chan Message {
	t.Helper()
	return subscribe(t, url, topic, qos, !strings.HasSuffix(topic, "/status"))
}

// SubscribeAll is Subscribe with the status messages.
func SubscribeAll(t testing.TB, url, topic string, qos byte) <-chan Message {
	t.Helper()
	return subscribe(t, url, topic, qos, false)
}

func subscribe(t testing.TB, url, topic string, qos byte, valuesOnly bool) <-chan Message {
	t.Helper()
	ch := make(chan Message, 1024)
	done := make(chan struct{})
	var (
		mu       sync.Mutex
		closed   bool
		connects atomic.Int64
	)
	opts := mqtt.NewClientOptions().
		AddBroker(url).
		SetClientID(fmt.Sprintf("testkit-%d-%d", os.Getpid(), brokerClients.Add(1))).
		SetProtocolVersion(4).
		SetCleanSession(false).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(time.Second).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			if valuesOnly && strings.HasSuffix(m.Topic(), "/status") {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if closed {
				return
			}
			select {
			case ch <- Message{Topic: m.Topic(), Payload: m.Payload(), Retained: m.Retained(), QoS: m.Qos()}:
			case <-done:
			}
		}).
		SetOnConnectHandler(func(c mqtt.Client) {
			// Subscribe again after a reconnect, in case the broker lost the
			// session; the first subscription is made below.
			if connects.Add(1) > 1 {
				c.Subscribe(topic, qos, nil)
			}
		})
	c := mqtt.NewClient(opts)
	if err := waitToken(c.Connect()); err != nil {
		t.Fatalf("broker: subscriber connect to %s: %v", url, err)
	}
	t.Cleanup(func() {
		close(done)
		c.Disconnect(100)
		mu.Lock()
		closed = true
		close(ch)
		mu.Unlock()
	})
	tok := c.Subscribe(topic, qos, nil)
	if err := waitToken(tok); err != nil {
		t.Fatalf("broker: subscribe %q: %v", topic, err)
	}
	if granted := tok.(*mqtt.SubscribeToken).Result()[topic]; granted > 2 {
		t.Fatalf("broker: subscribe %q: refused by the broker (code %#x)", topic, granted)
	}
	return ch
}

func waitToken(tok mqtt.Token) error {
	if !tok.WaitTimeout(deadline) {
		return errors.New("timed out")
	}
	return tok.Error()
}
