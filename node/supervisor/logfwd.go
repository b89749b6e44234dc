package supervisor

import (
	"encoding/json"

	"regexp"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
)

// logLine logs one line of a child's output. Lines in logrus' text
// (logfmt) or JSON form keep their level, message and fields; BIRD's
// "date time <LEVEL> text" keeps its level; anything else is logged as is
// at info level. The caller's logger carries the component field.
func logLine(log *logrus.Entry, line string) {
	line = strings.TrimRight(line, "\r")
	if strings.TrimSpace(line) == "" {
		return
	}
	if lvl, msg, fields, ok := parseStructured(line); ok {
		log.WithFields(fields).Log(lvl, msg)
		return
	}
	if m := birdLine.FindStringSubmatch(line); m != nil {
		lvl := birdLevel(m[1])
		if m[2] == "Shutdown completed" { // BIRD logs its normal end as <FATAL>
			lvl = logrus.InfoLevel
		}
		log.Log(lvl, m[2])
		return
	}
	lvl := logrus.InfoLevel
	if strings.HasPrefix(line, "bird: ") { // BIRD's startup errors
		lvl = logrus.ErrorLevel
	}
	log.Log(lvl, line)
}

// birdLine matches BIRD's stderr log: "2026-11-21 06:25:39.421 <INFO> Started".
var birdLine = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? <([A-Z]+)> (.*)$`)

func birdLevel(tag string) logrus.Level {
	switch tag {
	case "TRACE", "DBG", "DEBUG":
		return logrus.DebugLevel
	case "WARN":
		return logrus.WarnLevel
	case "ERR", "BUG", "FATAL":
		return logrus.ErrorLevel
	default: // INFO, AUTH, RMT
		return logrus.InfoLevel
	}
}

// parseStructured reads a logrus text (logfmt) or JSON line that has at
// least a level and a message.
func parseStructured(line string) (logrus.Level, string, logrus.Fields, bool) {
	var kv map[string]any
	if strings.HasPrefix(line, "{") {
		if err := json.Unmarshal([]byte(line), &kv); err != nil {
			return 0, "", nil, false
		}
	} else {
		pairs, ok := parseLogfmt(line)
		if !ok {
			return 0, "", nil, false
		}
		kv = make(map[string]any, len(pairs))
		for k, v := range pairs {
			kv[k] = v
		}
	}
	lvlS, ok1 := kv["level"].(string)
	msg, ok2 := kv["msg"].(string)
	if !ok1 || !ok2 {
		return 0, "", nil, false
	}
	lvl, err := logrus.ParseLevel(lvlS)
	if err != nil {
		return 0, "", nil, false
	}
	if lvl < logrus.ErrorLevel { // panic/fatal of a child: report, do not act
		lvl = logrus.ErrorLevel
	}
	fields := logrus.Fields{}
	for k, v := range kv {
		switch k {
		case "level", "msg", "time":
		case "component":
			fields["child_component"] = v
		default:
			fields[k] = v
		}
	}
	return lvl, msg, fields, true
}

// parseLogfmt splits `key=value key="quoted value"` pairs. Every token
// must be a pair.
func parseLogfmt(s string) (map[string]string, bool) {
	out := map[string]string{}
	for {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			return out, len(out) > 0
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(s[:eq], ` "`) {
			return nil, false
		}
		key := s[:eq]
		s = s[eq+1:]
		if strings.HasPrefix(s, `"`) {
			// Find the closing quote, honouring backslash escapes.
			end := -1
			for i := 1; i < len(s); i++ {
				if s[i] == '\\' {
					i++
					continue
				}
				if s[i] == '"' {
					end = i
					break
				}
			}
			if end < 0 {
				return nil, false
			}
			v, err := strconv.Unquote(s[:end+1])
			if err != nil {
				v = s[1:end]
			}
			out[key] = v
			s = s[end+1:]
			continue
		}
		sp := strings.IndexByte(s, ' ')
		if sp < 0 {
			sp = len(s)
		}
		out[key] = s[:sp]
		s = s[sp:]
	}
}
