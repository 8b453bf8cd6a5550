package store

import (
	"context"
	"database/sql"
	"fmt"
)

// rowScanner is a *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }

// querier is the read pool, the write connection or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryAll runs q and returns every row as scan reads it; errors name what
// was being read.
func queryAll[T any](ctx context.Context, db querier, what string, scan func(rowScanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return out, nil
}

func scanInt64(row rowScanner) (int64, error) {
	var v int64
	err := row.Scan(&v)
	return v, err
}

func scanString(row rowScanner) (string, error) {
	var v string
	err := row.Scan(&v)
	return v, err
}

func scanUID(row rowScanner) (uint32, error) {
	v, err := scanInt64(row)
	return uint32(v), err
}
