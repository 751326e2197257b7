package collectors

import (
	"fmt"
	"testing"
)

func TestElements(t *testing.T) {
	cases := []struct {
		in      any
		want    string
		isArray bool
	}{
		{[]any{1, "a"}, "[1 a]", true},
		{[]int32{1, 2}, "[1 2]", true},
		{[]float64{}, "[]", true},
		{[]byte("ab"), "[]", false}, // a ByteString
		{"ab", "[]", false},
		{nil, "[]", false},
		{int32(3), "[]", false},
	}
	for _, c := range cases {
		got, ok := Elements(c.in)
		if ok != c.isArray || fmt.Sprint(got) != c.want {
			t.Errorf("Elements(%#v) = %v, %v; want %s, %v", c.in, got, ok, c.want, c.isArray)
		}
	}
}
