package placement

import (
	"cmp"
	"slices"
)

// Plan assigns each process whose load is at least minLoad to one of cpus,
// heaviest first, each to the CPU least loaded so far (ties: the lower
// index), when more such processes are busy than there are CPUs. It
// returns the CPU of each pinned process; a process it leaves out runs
// anywhere. Loads are in CPUs (1 = one CPU busy all the time).
func Plan(loads map[string]float64, cpus []int, minLoad float64) map[string]int {
	var busy []string
	for name, l := range loads {
		if l >= minLoad {
			busy = append(busy, name)
		}
	}
	if len(busy) <= len(cpus) || len(cpus) == 0 {
		return nil
	}
	slices.SortFunc(busy, func(a, b string) int {
		if c := cmp.Compare(loads[b], loads[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	onCPU := make([]float64, len(cpus))
	plan := make(map[string]int, len(busy))
	for _, name := range busy {
		k := 0
		for i := range onCPU {
			if onCPU[i] < onCPU[k] {
				k = i
			}
		}
		onCPU[k] += loads[name]
		plan[name] = cpus[k]
	}
	return plan
}

// Makespan is the load of plan's most loaded CPU: the pinned processes'
// loads summed per CPU. The processes it leaves free count on no CPU.
func Makespan(plan map[string]int, loads map[string]float64) float64 {
	per := map[int]float64{}
	worst := 0.0
	for name, cpu := range plan {
		per[cpu] += loads[name]
		worst = max(worst, per[cpu])
	}
	return worst
}

// better reports whether next should replace cur under loads: it pins or
// frees other processes than cur does, or cuts the makespan by at least
// a tenth.
func better(next, cur map[string]int, loads map[string]float64) bool {
	if len(next) != len(cur) {
		return true
	}
	for name := range next {
		if _, ok := cur[name]; !ok {
			return true
		}
	}
	return Makespan(next, loads) < 0.9*Makespan(cur, loads)
}
