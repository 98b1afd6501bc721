// Package dataset builds and reads Fashion-MNIST-3, serket's paired
// dataset: every Fashion-MNIST item seen through three modalities, each
// stored in its own shard so that each module (its own OS process) reads
// its own modality and nothing else.
//
//   - vision: the 28×28 image, from Debian's dataset-fashion-mnist
//     ([LoadFashionMNIST] reads its IDX files, see [ReadIDX]).
//   - language: a short caption made from the class by a seeded template
//     and synonym ("a photo of a sneaker", "my trainers"; see [Caption]),
//     encoded with [CaptionVocab] into [MaxTokens] token ids.
//   - audio: the class name spoken by espeak-ng with many voices, rates and
//     pitches plus noise, as log-mel features (package speech); test items
//     use voices that training never heard.
//
// [Prepare] (the CLI's `serket data prepare`) builds it once, offline;
// nothing is downloaded at run time.
//
// # Ids and splits
//
// An item's id is its place in Fashion-MNIST: train item i has id i
// (0 to 59,999), test item j has id [TestIDBase]+j (60,000 to 69,999), so
// [Split] tells the split from the id alone, and an id means the same item
// in a small (PrepareConfig.Limit) dataset as in the full one.
//
// # Layout of a prepared dataset
//
//	DIR/manifest.json   ids, split and class of every item; the seed and
//	                    the Config hash (evaluation only, see below)
//	DIR/vision.shard    784 bytes per item: the pixels, row-major, 0..255;
//	                    Meta rows, cols
//	DIR/language.shard  MaxTokens little-endian int32 per item: the caption's
//	                    token ids; Meta vocab (the words, "\n"-joined, in id
//	                    order from 3: see [NewVocab]), max_tokens
//	DIR/audio.shard     one little-endian uint32 per item: a row of
//	                    Tables["features"], which holds the train pool's
//	                    utterances, then the test pool's, each Frames×Mels
//	                    float32 (frame-major); Tables["mean"] and ["std"]:
//	                    the mean and standard deviation of each of the
//	                    Frames×Mels features over the train pool (std at
//	                    least 1e-3), for normalising; Meta sample_rate,
//	                    nfft, win, hop, mels, frames, floor (the
//	                    speech.Config), train_pool and test_pool (utterance
//	                    counts: rows below train_pool are train utterances;
//	                    within each pool the rows are in a seeded random
//	                    order, so a row number tells nothing of the class)
//
// Every shard's Meta also has config (the manifest's Config hash) and seed.
// An item's utterance is one of its class from its split's pool, so many
// items share an utterance: the pools are AudioTrain and AudioTest
// utterances per class (150 and 40 by default).
//
// A shard file ([WriteShard], [ReadShard]) is little-endian: the magic
// "SERKETSHARD\n", a uint32 format version ([ShardVersion]), a uint32 header
// length and a msgpack header (modality, record count and size, Meta, table
// sizes), the ids as uint64, the records, the tables as float32 in name
// order, and a CRC-32C of all that. Files are written atomically (temporary
// file, fsync, rename) and verified whole when read.
//
// # Who may read what
//
// A module reads only its own shard (ShardPath(dir, modality)) and computes
// its own partial-pairing mask with [Present]; the language and audio
// modules never see a label (their shards hold none: captions and
// utterances are only made from the class). The manifest, which holds the
// labels, is for evaluation and for choosing batches of ids; no module
// reads it.
//
// # Determinism
//
// A seed determines everything: captions (rand seeded by seed and id),
// which utterance each item gets (a hash of seed and id), the audio pool.
// Prepare with the same inputs and config writes byte-identical shards,
// whatever the number of workers. The manifest's Config is a hash of all
// that determines the data (inputs, config, formats, the caption generator,
// the espeak-ng version); Prepare skips the work when DIR already holds a
// valid dataset with the same hash.
package dataset
