//go:build !linux

package files

import "errors"

// asUser is Linux-only: elsewhere a transfer as another user is refused.
func asUser(*Credential, func() error) error {
	return errors.New("files: transfers as another user need Linux; clear the run-as user")
}
