#!/bin/sh
# Remove from an installed pyarrow (in $1) what the compactor never loads: Flight, the cloud
# filesystems (S3 is read through boto3), ORC, Parquet encryption, headers, Cython sources, tests.
# libarrow_substrait stays: libarrow_python links it. tests/infra/test_arrow_layer.py compacts
# with a pyarrow trimmed by this very script, so a removal that breaks compaction fails the tests.
set -eu
p="$1/pyarrow"
[ -d "$p" ] || { echo "no pyarrow under $1" >&2; exit 1; }
rm -rf "$p/include" "$p/tests" "$p/src" "$p/includes"
rm -f "$p"/libarrow_flight.so* "$p"/libarrow_python_flight.so* "$p"/_flight.*.so "$p/flight.py"
rm -f "$p"/libarrow_s3.so* "$p"/_s3fs.*.so "$p"/_gcsfs.*.so "$p"/_azurefs.*.so "$p"/_hdfs.*.so
rm -f "$p"/_orc.*.so "$p"/_dataset_orc.*.so "$p/orc.py" "$p"/_substrait.*.so "$p/substrait.py"
rm -f "$p"/_parquet_encryption.*.so "$p"/_dataset_parquet_encryption.*.so "$p"/libarrow_python_parquet_encryption.so*
rm -f "$p"/_pyarrow_cpp_tests.*.so
find "$p" \( -name '*.pxd' -o -name '*.pyx' -o -name '*.pxi' -o -name '*.h' -o -name '*.cc' -o -name '*.pyi' \) -delete
find "$1" -name __pycache__ -type d -prune -exec rm -rf {} +
