package eval

import "testing"

// The default evaluation is the fast one; Thorough is today's published
// sizes (K = 1000 on 1000 items) and costs at least ten times as much; a
// field set by hand wins over either preset; a negative size is refused.
func TestConfigPresets(t *testing.T) {
	type sizes struct {
		items, prior, iwaeItems, iwaeK, probeTrain int
		seed                                       uint64
	}
	resolve := func(c Config) sizes {
		t.Helper()
		r, err := c.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		return sizes{r.Items, r.Prior, r.IWAEItems, r.IWAEK, r.ProbeTrain, r.Seed}
	}
	fast, thorough := resolve(Config{}), resolve(Config{Thorough: true})
	if want := (sizes{1000, 1000, 500, 100, 2000, 1}); fast != want {
		t.Errorf("default %+v, want %+v", fast, want)
	}
	if want := (sizes{1000, 1000, 1000, 1000, 5000, 1}); thorough != want {
		t.Errorf("thorough %+v, want %+v", thorough, want)
	}
	// The likelihoods are nearly all of the time and scale with items × K.
	if f, th := fast.iwaeItems*fast.iwaeK, thorough.iwaeItems*thorough.iwaeK; th < 10*f {
		t.Errorf("IWAE work: fast %d, thorough %d, want thorough ≥ 10× fast", f, th)
	}
	if got := resolve(Config{Thorough: true, IWAEK: 300, Seed: 4}); got.iwaeK != 300 || got.seed != 4 || got.iwaeItems != 1000 {
		t.Errorf("thorough with K = 300 and seed 4: %+v", got)
	}
}
