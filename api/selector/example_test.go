package selector_test

import (
	"fmt"

	"github.com/roostnet/roost/api/selector"
)

func ExampleParse() {
	sel, err := selector.Parse(`route-reflector == 'true' && projectcalico.org/zone in {"b", "a"}`)
	if err != nil {
		panic(err)
	}
	fmt.Println(sel)
	fmt.Println(sel.Evaluate(map[string]string{"route-reflector": "true", "projectcalico.org/zone": "a"}))
	fmt.Println(sel.Evaluate(map[string]string{"route-reflector": "true"}))

	_, err = selector.Parse("a == ")
	fmt.Println(err)
	// Output:
	// (route-reflector == "true" && projectcalico.org/zone in {"a", "b"})
	// true
	// false
	// selector "a == ": expected a quoted string at offset 5
}
