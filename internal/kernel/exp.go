package kernel

// The constants of the Cephes single-precision exponential nn.expfSlice
// computes (and SiLU in vectors): e^x = 2^k·e^r, k = round(x·log2 e),
// r = x − k·ln 2 (ln 2 in two parts for precision), e^r by a polynomial.
const (
	ExpLog2e = 1.44269504088896341
	ExpLn2Hi = 0.693359375
	ExpLn2Lo = -2.12194440e-4
	ExpRound = 12582912 // 1.5·2²³: adding and subtracting it rounds to an integer
	ExpC0    = 1.9875691500e-4
	ExpC1    = 1.3981999507e-3
	ExpC2    = 8.3334519073e-3
	ExpC3    = 4.1665795894e-2
	ExpC4    = 1.6666665459e-1
	ExpC5    = 5.0000001201e-1
)
