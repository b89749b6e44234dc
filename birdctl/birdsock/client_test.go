package birdsock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
)

const hello2 = "0001 BIRD 2.0.12 ready.\n"

func dialT(t *testing.T, path string, opts ...Option) *Client {
	t.Helper()
	c, err := Dial(context.Background(), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestExecTranscripts replays every recorded command, with replies written
// whole, byte by byte and in odd-sized chunks.
func TestExecTranscripts(t *testing.T) {
	for _, file := range []string{"bird2-active.txt", "bird2-mesh.txt", "bird2-static.txt", "bird16.txt"} {
		tr := loadTranscript(t, file)
		for _, chunk := range []int{0, 1, 7} {
			t.Run(fmt.Sprintf("%s/chunk%d", file, chunk), func(t *testing.T) {
				srv := birdtest.Serve(t, tr.Hello, chunk, transcriptHandler(tr))
				c := dialT(t, srv.Socket)
				if want := parseHello(strings.TrimSpace(tr.Hello[5:])); c.Version() != want {
					t.Errorf("Version() = %q, want %q", c.Version(), want)
				}
				for _, cmd := range tr.Commands {
					want := reply(t, tr, cmd)
					got, err := c.Exec(context.Background(), cmd)
					var be *BirdError
					if want.Code >= 8000 {
						if !errors.As(err, &be) || be.Code != want.Code || be.Command != cmd {
							t.Errorf("%s: error %v, want BirdError %d", cmd, err, want.Code)
						}
					} else if err != nil {
						t.Errorf("%s: %v", cmd, err)
						continue
					}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("%s: reply\n%+v\nwant\n%+v", cmd, got, want)
					}
				}
				if n := srv.Connections(); n != 1 {
					t.Errorf("used %d connections, want 1", n)
				}
			})
		}
	}
}

func TestReplyLines(t *testing.T) {
	rep := reply(t, loadTranscript(t, "bird2-mesh.txt"), "show status")
	want := []Line{
		{1000, "BIRD 2.0.12"},
		{1011, "Router ID is 10.0.0.1"},
		{1011, "Hostname is vm"},
		{1011, "Current server time is 2026-11-21 05:46:09.040"},
		{1011, "Last reboot on 2026-11-21 05:43:41.128"},
		{1011, "Last reconfiguration on 2026-11-21 05:44:03.016"},
		{13, "Daemon is up and running"},
	}
	if rep.Code != 13 || !reflect.DeepEqual(rep.Lines, want) {
		t.Errorf("got %d %+v", rep.Code, rep.Lines)
	}
	rep = reply(t, loadTranscript(t, "bird2-mesh.txt"), "show protocols")
	text := rep.Text()
	if strings.Contains(text, "0000") || !strings.HasPrefix(text, "Name       Proto") || !strings.Contains(text, "\nMesh_10_0_0_2 BGP") {
		t.Errorf("Text() = %q", text)
	}
}

func TestReadReplyMalformed(t *testing.T) {
	for _, raw := range []string{
		"hello\n",
		" continuation first\n0000 \n",
		"12x4 bad\n",
		"0000x\n",
	} {
		if _, err := ParseReply(raw); !errors.Is(err, errMalformed) {
			t.Errorf("ParseReply(%q) = %v, want malformed", raw, err)
		}
	}
	if _, err := ParseReply("1000-partial\n 1\n"); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated reply: %v", err)
	}
	rep, err := ParseReply("0000\r\n")
	if err != nil || rep.Code != 0 {
		t.Errorf("bare 0000 with CRLF: %v %+v", err, rep)
	}
}

// bigProtocols returns a `show protocols` reply listing n protocols.
func bigProtocols(n int) string {
	var b strings.Builder
	b.WriteString("2002-Name       Proto      Table      State  Since         Info\n")
	for i := 0; i < n; i++ {
		prefix := " "
		if i == 0 {
			prefix = "1002-"
		}
		fmt.Fprintf(&b, "%sMesh_10_%d_%d_%d BGP        ---        up     05:43:45.359  Established   \n", prefix, i/65536, i/256%256, i%256)
	}
	b.WriteString("0000 \n")
	return b.String()
}

func TestLongReply(t *testing.T) {
	const n = 5000
	raw := bigProtocols(n)
	// Routes with attributes: codes alternate between 1007, 1008 and 1012.
	var routes strings.Builder
	routes.WriteString("1007-Table master4:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&routes, "1007-10.%d.%d.0/24         unreachable [Mesh_10_0_0_2 05:43:47.223 from 127.0.0.2] * (100) [i]\n", i/256, i%256)
		routes.WriteString("1008-\tType: BGP univ\n1012-\tBGP.origin: IGP\n \tBGP.as_path: \n \tBGP.next_hop: 127.0.0.2\n")
	}
	routes.WriteString("0000 \n")
	srv := birdtest.Serve(t, hello2, 4093, func(fc *birdtest.Conn, cmd string) bool {
		if cmd == "show route all" {
			return fc.Send(routes.String()) == nil
		}
		return fc.Send(raw) == nil
	})
	c := dialT(t, srv.Socket)
	rep, err := c.Protocols(context.Background())
	if err != nil || len(rep) != n || rep[n-1].Name != "Mesh_10_0_19_135" {
		t.Fatalf("got %d protocols, err %v", len(rep), err)
	}
	rs, err := c.Routes(context.Background(), "all")
	if err != nil || len(rs) != n || rs[n-1].Attributes["BGP.next_hop"] != "127.0.0.2" {
		t.Fatalf("got %d routes, err %v", len(rs), err)
	}
}

func TestAsyncLines(t *testing.T) {
	srv := birdtest.Serve(t, hello2, 3, func(fc *birdtest.Conn, cmd string) bool {
		return fc.Send("+Disabling protocol Mesh_10_0_0_2\n"+
			"2002-Name       Proto      Table      State  Since         Info\n"+
			"+Mesh_10_0_0_2: Missing next hop address\n"+
			"1002-device1    Device     ---        up     05:43:41.128  \n"+
			"+0015 numbered async\n"+
			" static1    Static     master4    up     05:43:41.128  \n"+
			"0000 \n") == nil
	})
	c := dialT(t, srv.Socket)
	rep, err := c.Exec(context.Background(), "show protocols")
	if err != nil {
		t.Fatal(err)
	}
	wantAsync := []string{"Disabling protocol Mesh_10_0_0_2", "Mesh_10_0_0_2: Missing next hop address", "0015 numbered async"}
	if !reflect.DeepEqual(rep.Async, wantAsync) {
		t.Errorf("Async = %q", rep.Async)
	}
	ps, err := ParseProtocols(rep.Text())
	if err != nil || len(ps) != 2 || ps[1].Name != "static1" {
		t.Errorf("protocols %+v, %v", ps, err)
	}
}

// hangOnce never answers the first command of the first connection and
// answers everything else.
func hangOnce(fc *birdtest.Conn, cmd string) bool {
	if fc.N == 1 {
		fc.Hang()
		return false
	}
	return fc.Send("0000 \n") == nil
}

func TestTimeoutThenRedial(t *testing.T) {
	srv := birdtest.Serve(t, hello2, 0, func(fc *birdtest.Conn, cmd string) bool {
		if fc.N == 1 {
			fc.Send("1000-partial reply\n") // then hang mid-reply
			fc.Hang()
			return false
		}
		return fc.Send("0000 \n") == nil
	})
	c := dialT(t, srv.Socket, WithTimeout(300*time.Millisecond))
	start := time.Now()
	_, err := c.Exec(context.Background(), "show status")
	elapsed := time.Since(start)
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if elapsed < 250*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("timed out after %v, want about 300ms", elapsed)
	}
	if !strings.Contains(err.Error(), "show status") || !strings.Contains(err.Error(), srv.Socket) {
		t.Errorf("error %q should name the command and socket", err)
	}
	if _, err := c.Exec(context.Background(), "show status"); err != nil {
		t.Fatalf("after a timeout the next call should redial: %v", err)
	}
	if n := srv.Connections(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestContextDeadlineAndCancel(t *testing.T) {
	srv := birdtest.Serve(t, hello2, 0, func(fc *birdtest.Conn, cmd string) bool {
		fc.Hang()
		return false
	})
	c := dialT(t, srv.Socket) // default 10s timeout: the context must win

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Exec(ctx, "show status")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("ctx deadline: err %v after %v", err, time.Since(start))
	}

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = c.Exec(ctx, "show status")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: err %v", err)
	}

	// A caller waiting for the connection gives up with its context too.
	hold, holdCancel := context.WithCancel(context.Background())
	go c.Exec(hold, "show status")
	time.Sleep(50 * time.Millisecond)
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Exec(ctx, "show protocols"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting caller: err %v", err)
	}
	holdCancel()
}

func TestHelloTimeout(t *testing.T) {
	srv := birdtest.Serve(t, "", 0, func(*birdtest.Conn, string) bool { return true })
	start := time.Now()
	_, err := Dial(context.Background(), srv.Socket, WithTimeout(200*time.Millisecond))
	if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("err %v after %v", err, time.Since(start))
	}
}

func TestCloseMidReply(t *testing.T) {
	full := loadTranscript(t, "bird2-mesh.txt").Replies["show route all"]
	srv := birdtest.Serve(t, hello2, 5, func(fc *birdtest.Conn, cmd string) bool {
		if fc.N == 1 {
			fc.Send(full[:len(full)/2])
			return false // close
		}
		return fc.Send(full) == nil
	})
	c := dialT(t, srv.Socket)
	if _, err := c.Exec(context.Background(), "show route all"); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want unexpected EOF", err)
	}
	routes, err := c.Routes(context.Background(), "all")
	if err != nil || len(routes) != 12 {
		t.Fatalf("after redial: %d routes, %v", len(routes), err)
	}
}

// The server closed the idle connection (BIRD restarted): the next
// command notices before sending and runs on a new connection at once.
func TestServerGoneBetweenCalls(t *testing.T) {
	closed := make(chan struct{})
	var conns []int
	var mu sync.Mutex
	srv := birdtest.Serve(t, hello2, 0, func(fc *birdtest.Conn, cmd string) bool {
		mu.Lock()
		conns = append(conns, fc.N)
		mu.Unlock()
		fc.Send("0000 \n")
		if fc.N == 1 {
			fc.Close() // the first connection closes after one reply
			close(closed)
			return false
		}
		return true
	})
	c := dialT(t, srv.Socket)
	if _, err := c.Exec(context.Background(), "show status"); err != nil {
		t.Fatal(err)
	}
	<-closed
	if _, err := c.Exec(context.Background(), "show status"); err != nil {
		t.Fatalf("a command after the server closed the idle connection: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(conns) != "[1 2]" {
		t.Errorf("commands ran on connections %v, want [1 2]", conns)
	}
}

// A connection that breaks while a command runs fails that command: it
// may have run (configure), so it is not repeated; the next one redials.
func TestServerGoneDuringCall(t *testing.T) {
	srv := birdtest.Serve(t, hello2, 0, func(fc *birdtest.Conn, cmd string) bool {
		if fc.N == 1 {
			return false // closes without a reply
		}
		fc.Send("0000 \n")
		return true
	})
	c := dialT(t, srv.Socket)
	if _, err := c.Exec(context.Background(), "configure"); err == nil {
		t.Fatal("expected an error when the connection breaks mid-command")
	}
	if _, err := c.Exec(context.Background(), "configure"); err != nil {
		t.Fatalf("next call should redial: %v", err)
	}
}

func TestConcurrentCallers(t *testing.T) {
	srv := birdtest.Serve(t, hello2, 3, func(fc *birdtest.Conn, cmd string) bool {
		arg := strings.TrimPrefix(cmd, "show route for ")
		return fc.Send("1007-Table master4:\n "+arg+" blackhole [static1 05:43:41.128] * (200)\n"+
			"+async noise\n"+"0000 \n") == nil
	})
	c := dialT(t, srv.Socket)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				prefix := fmt.Sprintf("10.%d.%d.0/24", g, i)
				rs, err := c.Routes(context.Background(), "for "+prefix)
				if err != nil {
					errs <- err
					return
				}
				if len(rs) != 1 || rs[0].Prefix != prefix {
					errs <- fmt.Errorf("asked %s, got %+v", prefix, rs)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := srv.Connections(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestDialErrors(t *testing.T) {
	missing := birdtest.SocketPath(t, "s")
	_, err := Dial(context.Background(), missing)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing socket: %v", err)
	}
	srv := birdtest.Serve(t, "8007 Access denied\n", 0, func(*birdtest.Conn, string) bool { return true })
	_, err = Dial(context.Background(), srv.Socket)
	if err == nil || !strings.Contains(err.Error(), "Access denied") || !strings.Contains(err.Error(), srv.Socket) {
		t.Errorf("bad hello: %v", err)
	}
}

func TestCloseAndInvalidCommands(t *testing.T) {
	srv := birdtest.Serve(t, hello2, 0, hangOnce)
	c := dialT(t, srv.Socket)
	for _, cmd := range []string{"", "show status\nshow protocols", "show\rstatus"} {
		if _, err := c.Exec(context.Background(), cmd); err == nil {
			t.Errorf("Exec(%q) accepted", cmd)
		}
	}
	// Close interrupts a command in progress.
	errc := make(chan error)
	go func() {
		_, err := c.Exec(context.Background(), "show status")
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Exec interrupted by Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not interrupt Exec")
	}
	if _, err := c.Exec(context.Background(), "show status"); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestConfigure(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := birdtest.Serve(t, hello2, 2, func(fc *birdtest.Conn, cmd string) bool {
		mu.Lock()
		got = append(got, cmd)
		mu.Unlock()
		file := strings.Trim(strings.TrimPrefix(strings.TrimPrefix(cmd, "configure"), " check"), ` "`)
		reading := "0002-Reading configuration from " + file + "\n"
		var reply string
		switch {
		case strings.Contains(cmd, "bad"):
			reply = reading + "8002 " + file + ":3:7 syntax error, unexpected '}'\n"
		case strings.Contains(cmd, "down"):
			reply = reading + "0006 Reconfiguration ignored, shutting down\n"
		case strings.HasPrefix(cmd, "configure check"):
			reply = reading + "0020 Configuration OK\n"
		case strings.Contains(cmd, "slow"):
			reply = reading + "0004 Reconfiguration in progress\n"
		default:
			reply = reading + "0003 Reconfigured\n"
		}
		return fc.Send(reply) == nil
	})
	c := dialT(t, srv.Socket)
	ctx := context.Background()
	for _, file := range []string{"/etc/bird/good.conf", "/etc/bird/slow.conf", ""} {
		if err := c.Configure(ctx, file); err != nil {
			t.Errorf("Configure(%q): %v", file, err)
		}
	}
	if err := c.ConfigureCheck(ctx, "/etc/bird/good.conf"); err != nil {
		t.Errorf("ConfigureCheck: %v", err)
	}
	err := c.Configure(ctx, "/etc/bird/bad.conf")
	var be *BirdError
	if !errors.As(err, &be) || be.Code != 8002 || !strings.Contains(err.Error(), "/etc/bird/bad.conf:3:7 syntax error") {
		t.Errorf("bad config: %v", err)
	}
	if err := c.ConfigureCheck(ctx, "/etc/bird/bad.conf"); !strings.Contains(fmt.Sprint(err), "bad.conf:3:7") {
		t.Errorf("check bad config: %v", err)
	}
	if err := c.Configure(ctx, "/etc/bird/down.conf"); !errors.As(err, &be) || be.Code != 6 {
		t.Errorf("shutting down: %v", err)
	}
	for _, file := range []string{`/tmp/a"b.conf`, "/tmp/a\nb.conf"} {
		if err := c.Configure(ctx, file); err == nil {
			t.Errorf("Configure(%q) accepted", file)
		}
	}
	want := []string{
		`configure "/etc/bird/good.conf"`, `configure "/etc/bird/slow.conf"`, `configure`,
		`configure check "/etc/bird/good.conf"`, `configure "/etc/bird/bad.conf"`,
		`configure check "/etc/bird/bad.conf"`, `configure "/etc/bird/down.conf"`,
	}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("commands sent:\n%q\nwant\n%q", got, want)
	}
}

// TestTypedCommands runs the typed helpers against recorded replies.
func TestTypedCommands(t *testing.T) {
	tr := loadTranscript(t, "bird2-mesh.txt")
	// ProtocolDetail sends the name as a quoted pattern.
	tr.Replies[`show protocols all "Mesh_10_0_0_2"`] = tr.Replies["show protocols all Mesh_10_0_0_2"]
	tr.Replies[`show protocols all "nosuch"`] = "8003 No protocols match\n"
	srv := birdtest.Serve(t, tr.Hello, 0, transcriptHandler(tr))
	c := dialT(t, srv.Socket)
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil || st.RouterID != "10.0.0.1" || !st.Up {
		t.Errorf("Status: %+v, %v", st, err)
	}
	ps, err := c.Protocols(ctx)
	if err != nil || len(ps) != 6 {
		t.Errorf("Protocols: %+v, %v", ps, err)
	}
	d, err := c.ProtocolDetail(ctx, "Mesh_10_0_0_2")
	if err != nil || d.BGPState != "Established" {
		t.Errorf("ProtocolDetail: %+v, %v", d, err)
	}
	var be *BirdError
	if _, err := c.ProtocolDetail(ctx, "nosuch"); !errors.As(err, &be) || be.Code != 8003 {
		t.Errorf("unknown protocol: %v", err)
	}
	for _, bad := range []string{"", "a*", `a"b`} {
		if _, err := c.ProtocolDetail(ctx, bad); err == nil {
			t.Errorf("ProtocolDetail(%q) accepted", bad)
		}
	}
	rs, err := c.Routes(ctx, "for 99.0.0.1")
	if err != nil || rs != nil {
		t.Errorf("network not found: %+v, %v", rs, err)
	}
	rs, err = c.Routes(ctx, "for 10.10.0.5")
	if err != nil || len(rs) != 2 {
		t.Errorf("Routes: %+v, %v", rs, err)
	}
	if _, err := c.Exec(ctx, "show foo"); !errors.As(err, &be) || be.Code != 9001 || !strings.Contains(be.Error(), "syntax error") {
		t.Errorf("syntax error: %v", err)
	}
}
