// Package eval measures a trained Fashion-MNIST-3 model (vision, language
// and audio modalities) on the test split: the held-out ELBO, and how well
// one modality predicts the class through another — coherence, judged by
// the language decoder's belief in each class's captions and by an image
// classifier trained here on the real training images.
//
// It runs in one process on module checkpoints (<dir>/<module>.ckpt), so a
// model trained by serket's processes and one imported from another trainer
// (the PyTorch reference under bench/) are measured by the same code.
//
// The labels come from the dataset's manifest, which no module ever reads:
// evaluation is the only place where they meet the model.
//
// eval never prints. Long work (Evaluate's phases, training a judge) tells
// a Progress callback how far it has got, and the caller shows it.
package eval
