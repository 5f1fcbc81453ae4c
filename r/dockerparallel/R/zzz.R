.onLoad <- function(libname, pkgname) {
  # DockerParam's class and methods are made in this namespace when BiocParallel is first used.
  bioc$where <- asNamespace(pkgname)
  if (requireNamespace("BiocParallel", quietly = TRUE)) dockerParamClass()
}
