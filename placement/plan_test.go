package placement

import (
	"maps"
	"testing"
)

func TestPlan(t *testing.T) {
	cpus := []int{0, 1}
	for _, tt := range []struct {
		name  string
		loads map[string]float64
		want  map[string]int
	}{
		{"the heaviest alone", map[string]float64{"audio": 0.9, "vision": 0.6, "language": 0.5, "integrator": 0.05},
			map[string]int{"audio": 0, "vision": 1, "language": 1}},
		{"two heavy, two light", map[string]float64{"a": 0.8, "b": 0.7, "c": 0.4, "d": 0.3},
			map[string]int{"a": 0, "b": 1, "c": 1, "d": 0}},
		{"ties broken by name", map[string]float64{"c": 0.5, "a": 0.5, "b": 0.5},
			map[string]int{"a": 0, "b": 1, "c": 0}},
		{"no more busy than CPUs", map[string]float64{"a": 1, "b": 1, "idle": 0.1}, nil},
		{"nothing busy", map[string]float64{"a": 0.1, "b": 0.2, "c": 0.01}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Plan(tt.loads, cpus, 0.25); !maps.Equal(got, tt.want) {
				t.Fatalf("Plan(%v) = %v, want %v", tt.loads, got, tt.want)
			}
		})
	}
	if got := Plan(map[string]float64{"a": 1, "b": 1}, nil, 0.25); got != nil {
		t.Fatalf("Plan on no CPUs = %v, want nil", got)
	}
	if got := Plan(map[string]float64{"a": 1, "b": 1, "c": 1}, []int{4, 7}, 0.25); !maps.Equal(got, map[string]int{"a": 4, "b": 7, "c": 4}) {
		t.Fatalf("Plan on CPUs 4 and 7 = %v, want their numbers", got)
	}
}

func TestBetter(t *testing.T) {
	loads := map[string]float64{"a": 0.9, "b": 0.6, "c": 0.5}
	cur := map[string]int{"a": 0, "b": 1, "c": 1} // makespan 1.1
	for _, tt := range []struct {
		name string
		next map[string]int
		want bool
	}{
		{"the same", map[string]int{"a": 0, "b": 1, "c": 1}, false},
		{"worse", map[string]int{"a": 0, "b": 0, "c": 1}, false},
		{"within a tenth", map[string]int{"a": 1, "b": 0, "c": 0}, false},
		{"frees every process", nil, true},
		{"pins another process", map[string]int{"a": 0, "b": 1, "d": 1}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := better(tt.next, cur, loads); got != tt.want {
				t.Fatalf("better(%v) = %v, want %v", tt.next, got, tt.want)
			}
		})
	}
	// A real gain: loads moved so that the current assignment is lopsided.
	shifted := map[string]float64{"a": 0.3, "b": 0.9, "c": 0.9}
	if !better(Plan(shifted, []int{0, 1}, 0.25), cur, shifted) {
		t.Fatal("an assignment that cuts the makespan from 1.8 to 1.2 was not taken")
	}
	if got := Makespan(cur, loads); got < 1.0999 || got > 1.1001 {
		t.Fatalf("Makespan = %v, want 1.1", got)
	}
}
