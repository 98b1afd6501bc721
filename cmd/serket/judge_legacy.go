package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"

	"github.com/serket-go/serket/eval"
)

// judge loads the modality's classifier cached in path (default: beside
// the dataset) when it was trained on this very dataset, else trains one
// and caches it. Only `serket bench quality` still uses this in-process
// judge; `serket eval` judges over the bus (eval.Pipeline.Judges).
func judge(m *eval.Model, modality, path string, log *slog.Logger) (*eval.Classifier, error) {
	if path == "" {
		path = filepath.Join(m.Data, "classifier-"+modality+".ckpt")
	}
	clf, err := eval.LoadClassifier(path, modality, m.FeatureSize(modality), m.Manifest.Config)
	if err == nil {
		return clf, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		log.Info("training the classifier again", "modality", modality, "cache", path, "why", err)
	}
	clf, err = m.TrainClassifier(modality, eval.ClassifierConfig{Progress: newPhaseBars(log).report})
	if err != nil {
		return nil, err
	}
	log.Info("classifier trained", "modality", modality, "test_accuracy", fmt.Sprintf("%.4f", clf.Accuracy))
	if err := clf.Save(path, m.Manifest.Config); err != nil {
		log.Warn("cannot cache the classifier", "err", err)
	}
	return clf, nil
}
