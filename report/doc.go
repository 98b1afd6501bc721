// Package report writes the results of an evaluation as a human-readable
// report: one directory with an index.html and the PNG (and WAV) files it
// shows, self-contained (relative links only, no script, no font or style
// sheet from the network) so that it can be opened from disk, copied or
// attached as it is.
//
// A Report holds headline figures (Summary), paragraphs (Notes), heat maps
// with their numbers (Matrices: e.g. cross-modal coherence, conditioning
// subsets × target modality), line plots (Curves: e.g. the ELBO per epoch
// from a metrics log), class-coloured 2-D projections (Scatters: e.g. the
// latent means through PCA2), grids of generated images or captions
// (Grids), playable sounds with their spectrograms (Audio) and plain
// Tables. Write validates it, naming the field at fault, and writes the
// directory atomically: it is either the previous report or the whole new
// one.
//
// The figures are drawn with gonum.org/v1/plot; HeatMap, LinePlot and
// ScatterPlot draw one figure to a file (.png, .svg or .pdf) on their own.
// ImageGrid tiles small images (28×28 Fashion-MNIST pictures, upscaled),
// GrayImage and SpectrogramImage turn the vision and audio modules' float
// arrays into pictures, and PCA2 projects latent codes to two dimensions.
//
// Text in the figures uses the Liberation fonts that gonum/plot compiles
// into the binary: nothing is read from the system or downloaded at run
// time. Every string of the Report is escaped in the HTML by html/template.
package report
