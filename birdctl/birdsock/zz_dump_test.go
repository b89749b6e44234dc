package birdsock
import ("testing";"fmt")
func TestZZDump(t *testing.T) {
	for _, f := range []string{"bird2-active.txt","bird2-mesh.txt","bird2-static.txt","bird16.txt"} {
		tr := loadTranscript(t, f)
		for _, cmd := range tr.cmds {
			rep := tr.reply(t, cmd)
			txt := rep.Text()
			var v any; var err error
			switch {
			case cmd == "show status": v, err = ParseStatus(txt)
			case cmd == "show protocols": v, err = ParseProtocols(txt)
			case len(cmd) > 18 && cmd[:18] == "show protocols all": v, err = ParseProtocolDetails(txt)
			case len(cmd) >= 10 && cmd[:10] == "show route" && cmd != "show route count": v, err = ParseRoutes(txt)
			default: continue
			}
			fmt.Printf("== %s %s\n%+v\nerr=%v\n", f, cmd, v, err)
		}
	}
}
