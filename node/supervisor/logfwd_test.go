package supervisor

import (
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

func TestLogLine(t *testing.T) {
	base, hook := test.NewNullLogger()
	base.SetLevel(logrus.DebugLevel)
	log := base.WithField("component", "confd")
	cases := []struct {
		line   string
		level  logrus.Level
		msg    string
		fields map[string]any
	}{
		{`time="2026-11-21T06:29:11Z" level=info msg="Starting confd" datastore="file /tmp/x" node=node1 version=dev`,
			logrus.InfoLevel, "Starting confd", map[string]any{"node": "node1", "datastore": "file /tmp/x", "component": "confd"}},
		{`time="2026-11-21T06:29:11Z" level=error msg="Render failed; keeping the last good configuration" error="reload failed: \"x\" down"`,
			logrus.ErrorLevel, "Render failed; keeping the last good configuration", map[string]any{"error": `reload failed: "x" down`}},
		{`{"level":"warning","msg":"json line","time":"x","component":"inner","n":3}`,
			logrus.WarnLevel, "json line", map[string]any{"child_component": "inner", "n": float64(3), "component": "confd"}},
		{`2026-11-21 06:25:39.421 <INFO> Started`, logrus.InfoLevel, "Started", nil},
		{`2026-11-21 06:25:39.421 <ERR> Mesh_10_0_0_2: Socket error: bind: Address in use`, logrus.ErrorLevel, "Mesh_10_0_0_2: Socket error: bind: Address in use", nil},
		{`2026-11-21 06:25:39.421 <WARN> Kernel dropped some netlink messages`, logrus.WarnLevel, "Kernel dropped some netlink messages", nil},
		{`2026-11-21 06:25:41.419 <FATAL> Shutdown completed`, logrus.InfoLevel, "Shutdown completed", nil},
		{`2026-11-21 06:25:41.419 <TRACE> Mesh_10_0_0_2: Started`, logrus.DebugLevel, "Mesh_10_0_0_2: Started", nil},
		{`bird: /etc/roost/bird/bird.cfg:3:1 syntax error`, logrus.ErrorLevel, "bird: /etc/roost/bird/bird.cfg:3:1 syntax error", nil},
		{`plain text = not logfmt`, logrus.InfoLevel, "plain text = not logfmt", nil},
		{`level=bogus msg=x`, logrus.InfoLevel, "level=bogus msg=x", nil},
	}
	for _, c := range cases {
		hook.Reset()
		logLine(log, c.line)
		e := hook.LastEntry()
		if e == nil {
			t.Fatalf("%q: nothing logged", c.line)
		}
		if e.Level != c.level || e.Message != c.msg {
			t.Errorf("%q: got %s %q, want %s %q", c.line, e.Level, e.Message, c.level, c.msg)
		}
		if e.Data["component"] != "confd" {
			t.Errorf("%q: component %v", c.line, e.Data["component"])
		}
		for k, v := range c.fields {
			if e.Data[k] != v {
				t.Errorf("%q: field %s = %#v, want %#v", c.line, k, e.Data[k], v)
			}
		}
		if _, ok := e.Data["time"]; ok {
			t.Errorf("%q: the child's time was kept as a field", c.line)
		}
	}
	hook.Reset()
	logLine(log, "   ")
	if len(hook.AllEntries()) != 0 {
		t.Error("a blank line was logged")
	}
}

func TestParseLogfmt(t *testing.T) {
	for _, bad := range []string{"", "word", `a="unterminated`, `"k"=v`, `a=b c`} {
		if _, ok := parseLogfmt(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
	got, ok := parseLogfmt(`a=1 b="two words" c="esc \"q\" \\" d=`)
	if !ok || got["a"] != "1" || got["b"] != "two words" || got["c"] != `esc "q" \` || got["d"] != "" {
		t.Fatalf("%v %#v", ok, got)
	}
}
