# The R worker: a process that a DockerParallel worker slot keeps running between tasks. It
# reads task frames on descriptor 3 and writes replies on descriptor 4 (see the Swift
# PersistentProcessProtocol): `length: uint32 big-endian | type: 1 byte | payload`.
#
# It needs base R only: its source travels to the worker as `Rscript -e <source>`, so a worker
# image needs R, not this package.

workerLoop <- function() {
  # raw = TRUE: without it R sniffs the first bytes for a compression magic number and eats them.
  input <- file("/dev/fd/3", open = "rb", raw = TRUE)
  output <- file("/dev/fd/4", open = "wb", raw = TRUE)
  number <- function(bytes) sum(as.numeric(bytes) * 256^(rev(seq_along(bytes)) - 1))
  send <- function(type, payload = raw(0)) {
    # Whatever the task printed goes out before its reply, so that it counts as that task's.
    flush(stdout())
    flush(stderr())
    writeBin(as.integer(length(payload) + 1), output, size = 4L, endian = "big")
    writeBin(c(charToRaw(type), payload), output)
    flush(output)
  }
  fail <- function(message, permanent = FALSE) {
    send("F", c(as.raw(if (permanent) 1L else 0L), charToRaw(enc2utf8(message))))
  }
  # Namespaces the worker lacks are an error when a task is decoded, not a warning.
  Sys.setenv("_R_NO_REPORT_MISSING_NAMESPACES_" = "false")
  resultLimit <- 24 * 1024 * 1024
  # A task: list(expr, items = list of variable lists, globals, rebind, packages, seeds). Each
  # item is evaluated in an environment of its variables over one of the globals.
  runTask <- function(task, jobID, index) {
    name <- paste0("task ", index + 1, " of job '", jobID, "'")
    for (package in task$packages) {
      loaded <- suppressPackageStartupMessages(
        library(package, character.only = TRUE, logical.return = TRUE, quietly = TRUE, warn.conflicts = FALSE))
      if (!loaded) {
        stop(structure(
          class = c("simpleError", "error", "condition"),
          list(message = paste0(
            name, " needs the R package '", package, "', which this worker does not have: install it on the workers ",
            "(makeDockerCluster(RPackages = \"", package, "\"), or a worker image that has it)"), call = NULL),
          permanent = TRUE))
      }
    }
    shared <- new.env(parent = globalenv())
    for (global in names(task$globals)) assign(global, task$globals[[global]], envir = shared)
    # Functions defined at the client's top level find the other globals here, not in the
    # worker's global environment.
    for (global in task$rebind) {
      f <- get(global, envir = shared)
      environment(f) <- shared
      assign(global, f, envir = shared)
    }
    values <- vector("list", length(task$items))
    for (i in seq_along(task$items)) {
      if (!is.null(task$seeds[[i]])) {
        if (RNGkind()[1] != "L'Ecuyer-CMRG") RNGkind("L'Ecuyer-CMRG")
        assign(".Random.seed", task$seeds[[i]], envir = globalenv())
      }
      local <- new.env(parent = shared)
      for (variable in names(task$items[[i]])) assign(variable, task$items[[i]][[variable]], envir = local)
      trace <- character(0)
      depth <- sys.nframe()
      value <- tryCatch(
        withCallingHandlers(eval(task$expr, local), error = function(e) {
          calls <- sys.calls()
          inner <- calls[-seq_len(depth + 3L)]
          inner <- inner[seq_len(max(0L, length(inner) - 2L))]
          trace <<- vapply(inner, function(call) paste(deparse(call, nlines = 1L), collapse = ""), "")
        }),
        error = function(e) e)
      if (inherits(value, "error")) {
        call <- conditionCall(value)
        detail <- paste0(
          conditionMessage(value),
          "\n\ncall: ", if (is.null(call)) "" else substr(paste(deparse(call, width.cutoff = 500L), collapse = " "), 1L, 1000L),
          "\ntraceback:\n", paste(rev(trace), collapse = "\n"))
        if (length(task$items) == 1L) stop(structure(class = c("simpleError", "error", "condition"), list(message = detail, call = NULL)))
        value <- structure(list(message = detail), class = "dockerparallelItemError")
      }
      values[i] <- list(value)
    }
    serialize(values, NULL, xdr = FALSE)
  }
  send("H")
  repeat {
    header <- readBin(input, "raw", 5L)
    if (length(header) < 5L) break
    length <- number(header[1:4]) - 1
    payload <- if (length > 0) readBin(input, "raw", length) else raw(0)
    if (length(payload) < length) break
    if (rawToChar(header[5]) != "T") next
    idLength <- number(payload[9:10])
    jobID <- rawToChar(payload[seq_len(idLength) + 10])
    index <- number(payload[5:8])
    body <- payload[-seq_len(10 + idLength)]
    task <- tryCatch(unserialize(body), error = function(e) e)
    if (inherits(task, "error")) {
      missing <- regmatches(conditionMessage(task), regexpr("there is no package called [^ ]+", conditionMessage(task)))
      fail(paste0(
        "task ", index + 1, " of job '", jobID, "' cannot be read on this worker: ", conditionMessage(task),
        if (length(missing)) " (install the package on the workers: makeDockerCluster(RPackages = ...) or a worker image that has it)"),
        permanent = TRUE)
      next
    }
    reply <- tryCatch(runTask(task, jobID, index), error = function(e) e)
    if (inherits(reply, "error")) {
      fail(conditionMessage(reply), permanent = isTRUE(attr(reply, "permanent")))
      next
    }
    if (length(reply) > resultLimit) {
      fail(paste0(
        "result too large: task ", index + 1, " of job '", jobID, "' returned ", length(reply),
        " bytes serialised, over the limit of ", resultLimit / 1024^2,
        " MiB: return less (a summary, or write the data to shared storage and return its path)"),
        permanent = TRUE)
      next
    }
    send("R", reply)
  }
  invisible(NULL)
}

# The worker's program: Rscript running workerLoop's source.
workerProgram <- function(rscript = "Rscript") {
  source <- paste(deparse(workerLoop, control = c("keepNA", "keepInteger", "niceNames", "showAttributes")), collapse = "\n")
  c(rscript, "-e", paste0("(", source, ")()"))
}
