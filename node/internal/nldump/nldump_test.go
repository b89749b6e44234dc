package nldump

import (
	"errors"
	"slices"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestList(t *testing.T) {
	for _, tc := range []struct {
		name        string
		interrupted int   // tries that are interrupted before one completes
		fail        error // returned by the completing try
		want        []int
		calls       int
		wantErr     error
	}{
		{name: "complete", want: []int{1, 2, 3}, calls: 1},
		{name: "interrupted once", interrupted: 1, want: []int{1, 2, 3}, calls: 2},
		{name: "interrupted almost always", interrupted: Attempts - 1, want: []int{1, 2, 3}, calls: Attempts},
		{name: "always interrupted", interrupted: 1000, calls: Attempts, wantErr: netlink.ErrDumpInterrupted},
		{name: "other error", fail: syscall.ENOBUFS, calls: 1, wantErr: syscall.ENOBUFS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			got, err := List(func() ([]int, error) {
				calls++
				if calls <= tc.interrupted {
					return []int{1}, netlink.ErrDumpInterrupted // partial, as the kernel's
				}
				if tc.fail != nil {
					return nil, tc.fail
				}
				return []int{1, 2, 3}, nil
			})
			if calls != tc.calls {
				t.Errorf("%d calls, want %d", calls, tc.calls)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || got != nil {
					t.Errorf("got %v, %v; want nil and %v (never a partial result)", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
