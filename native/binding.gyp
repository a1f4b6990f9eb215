{
  # The vhost-user helper addon: Unix-socket fd passing, mmap of shared memory,
  # eventfd and uv_poll for Node. Linux only; plain N-API C (no node-addon-api),
  # so it builds with nothing but node-gyp, a C compiler, python3 and make.
  # scripts/build-native.mjs runs node-gyp here and never fails an install.
  "targets": [
    {
      "target_name": "vhost_user_native",
      "sources": ["src/vhost_user_native.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-fPIC", "-fvisibility=hidden"],
      "cflags_c": ["-std=gnu11"],
      "configurations": {
        "Release": {
          "cflags!": ["-O3"],
          "cflags": ["-O2"]
        }
      }
    }
  ]
}
