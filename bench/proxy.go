package main

import (
	"bufio"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// birdProxy sits between confd and BIRD's control socket and stamps every
// `configure` command confd sends, so the harness sees BIRD's reconfigure
// rate from outside confd. It forwards bytes unchanged both ways.
type birdProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu         sync.Mutex
	configures []time.Time
	conns      map[net.Conn]struct{}
}

func startBirdProxy(path, target string) (*birdProxy, error) {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	p := &birdProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.serve(c) }()
		}
	}()
	return p, nil
}

func (p *birdProxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *birdProxy) serve(client net.Conn) {
	defer client.Close()
	bird, err := net.Dial("unix", p.target)
	if err != nil {
		return // BIRD not up yet: confd sees a broken socket and retries
	}
	defer bird.Close()
	p.track(client, true)
	p.track(bird, true)
	defer p.track(client, false)
	defer p.track(bird, false)
	go func() {
		io.Copy(client, bird)
		client.Close()
	}()
	rd := bufio.NewReader(client)
	for {
		line, err := rd.ReadString('\n')
		if line != "" {
			if strings.HasPrefix(line, "configure") && !strings.HasPrefix(line, "configure check") {
				p.mu.Lock()
				p.configures = append(p.configures, time.Now())
				p.mu.Unlock()
			}
			if _, werr := io.WriteString(bird, line); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// since returns the configure stamps from t on.
func (p *birdProxy) since(t time.Time) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []time.Time
	for _, c := range p.configures {
		if !c.Before(t) {
			out = append(out, c)
		}
	}
	return out
}

func (p *birdProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
