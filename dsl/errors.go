package dsl

import (
	"errors"
	"io/fs"
)

func errorsIsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

func asPathError(err error, target **fs.PathError) bool { return errors.As(err, target) }
