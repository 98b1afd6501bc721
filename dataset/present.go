package dataset

import "slices"

// Present reports whether item id of split has modality under partial
// pairing: a mask computed from (seed, id) alone, so every module computes
// its own presence without a shared file, and all agree as long as they pass
// the same modalities (in the same order), fraction and seed.
//
// Test items have every modality. A train item is fully paired with
// probability fraction (chosen by a hash of seed and id); otherwise it keeps
// exactly one modality, chosen uniformly by another hash of seed and id. A
// fraction >= 1 means fully paired data. A modality not in modalities is
// never present.
func Present(id uint64, split, modality string, modalities []string, fraction float64, seed uint64) bool {
	k := slices.Index(modalities, modality)
	if k < 0 {
		return false
	}
	if Paired(id, split, fraction, seed) {
		return true
	}
	return hash3(seed, id, purposeSingle)%uint64(len(modalities)) == uint64(k)
}

// Paired reports whether item id of split has every modality under
// partial pairing (Present): every test item, and a train item with
// probability fraction. It needs no list of modalities, so a process that
// has none (the integrator) knows which items are paired.
func Paired(id uint64, split string, fraction float64, seed uint64) bool {
	if split != Train || fraction >= 1 {
		return true
	}
	// The top 53 bits as a uniform float in [0, 1).
	return float64(hash3(seed, id, purposePaired)>>11)/(1<<53) < fraction
}
