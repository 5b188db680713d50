package admin

import (
	"encoding/binary"
	"strconv"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgmts/pgmts/wire"
)

// colType is a result column's PostgreSQL type. PgBouncer's console uses
// text, int4 and numeric; the MTS views add int8.
type colType uint32

const (
	typeText    colType = 25
	typeInt4    colType = 23
	typeInt8    colType = 20
	typeNumeric colType = 1700
)

type column struct {
	name string
	typ  colType
}

// Row values are nil (NULL), string, or int64 (any numeric column).
type row []any

// result is a command's answer: rows (when cols is set), an optional
// notice, and the CommandComplete tag.
type result struct {
	cols   []column
	rows   []row
	notice *pgproto3.NoticeResponse
	tag    string
	// after runs once the reply is pushed to the client (SHUTDOWN).
	after func()
}

// formatFor resolves a Bind's result format codes for column i: none means
// text for all, one applies to all, else one per column.
func formatFor(formats []int16, i int) int16 {
	switch {
	case len(formats) == 0:
		return 0
	case len(formats) == 1:
		return formats[0]
	case i < len(formats):
		return formats[i]
	}
	return 0
}

func rowDescription(dst []byte, cols []column, formats []int16) []byte {
	fields := make([]pgproto3.FieldDescription, len(cols))
	for i, c := range cols {
		size := int16(-1)
		switch c.typ {
		case typeInt4:
			size = 4
		case typeInt8:
			size = 8
		}
		fields[i] = pgproto3.FieldDescription{Name: []byte(c.name), DataTypeOID: uint32(c.typ),
			DataTypeSize: size, TypeModifier: -1, Format: formatFor(formats, i)}
	}
	return wire.Append(dst, &pgproto3.RowDescription{Fields: fields})
}

func dataRow(dst []byte, cols []column, r row, formats []int16) []byte {
	values := make([][]byte, len(cols))
	for i, c := range cols {
		values[i] = encodeValue(c.typ, r[i], formatFor(formats, i) == 1)
	}
	return wire.Append(dst, &pgproto3.DataRow{Values: values})
}

// encodeValue renders one value in text or binary format; nil is NULL.
func encodeValue(typ colType, v any, binaryFormat bool) []byte {
	switch v := v.(type) {
	case nil:
		return nil
	case string:
		return []byte(v)
	case int64:
		if !binaryFormat {
			return strconv.AppendInt(nil, v, 10)
		}
		switch typ {
		case typeInt4:
			return binary.BigEndian.AppendUint32(nil, uint32(int32(v)))
		case typeInt8:
			return binary.BigEndian.AppendUint64(nil, uint64(v))
		case typeNumeric:
			return numericBinary(v)
		}
		return strconv.AppendInt(nil, v, 10)
	}
	panic("admin: unsupported value type")
}

// numericBinary is PostgreSQL's binary numeric for an integer: base-10000
// digits, most significant first, with their count, weight and sign.
func numericBinary(v int64) []byte {
	var sign uint16
	u := uint64(v)
	if v < 0 {
		sign, u = 0x4000, uint64(-v)
	}
	var digits []uint16
	for ; u > 0; u /= 10000 {
		digits = append([]uint16{uint16(u % 10000)}, digits...)
	}
	weight := max(len(digits)-1, 0)
	out := binary.BigEndian.AppendUint16(nil, uint16(len(digits)))
	out = binary.BigEndian.AppendUint16(out, uint16(weight))
	out = binary.BigEndian.AppendUint16(out, sign)
	out = binary.BigEndian.AppendUint16(out, 0) // display scale
	for _, d := range digits {
		out = binary.BigEndian.AppendUint16(out, d)
	}
	return out
}

// encode writes a result: notice, RowDescription (describe: the simple
// query protocol sends it, Execute does not), rows and CommandComplete.
func (r *result) encode(dst []byte, describe bool, formats []int16) []byte {
	if r.notice != nil {
		dst = wire.Append(dst, r.notice)
	}
	if r.cols != nil && describe {
		dst = rowDescription(dst, r.cols, formats)
	}
	for _, row := range r.rows {
		dst = dataRow(dst, r.cols, row, formats)
	}
	return wire.Append(dst, &pgproto3.CommandComplete{CommandTag: []byte(r.tag)})
}
