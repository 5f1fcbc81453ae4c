# Running the dockerparallel program, which starts, scales and stops clusters.

#' The dockerparallel program this package runs.
#'
#' `options(dockerparallel.program = "/path/to/dockerparallel")`, or the environment variable
#' `DOCKERPARALLEL_PROGRAM`, or `dockerparallel` on the `PATH`.
#' @export
dockerparallelProgram <- function() {
  program <- getOption("dockerparallel.program", Sys.getenv("DOCKERPARALLEL_PROGRAM", ""))
  if (!nzchar(program)) program <- Sys.which("dockerparallel")[[1]]
  if (!nzchar(program) || !file.exists(program)) {
    stop("the dockerparallel program is not on the PATH: install it (see the project's README), or set ",
         "options(dockerparallel.program = \"/path/to/dockerparallel\")", call. = FALSE)
  }
  unname(program)
}

# Runs the program; returns its standard output as lines. Its messages (standard error) are shown
# when verbose; on failure they make the error.
runProgram <- function(arguments, verbose = 1, program = dockerparallelProgram()) {
  errorFile <- tempfile("dockerparallel-")
  on.exit(unlink(errorFile), add = TRUE)
  output <- suppressWarnings(system2(program, shQuote(arguments), stdout = TRUE, stderr = errorFile))
  status <- attr(output, "status")
  messages <- if (file.exists(errorFile)) readLines(errorFile, warn = FALSE) else character(0)
  if (!is.null(status) && status != 0) {
    detail <- trimws(paste(c(messages, output), collapse = "\n"))
    detail <- sub("^Error: ", "", detail)
    stop(paste0("dockerparallel ", arguments[1], " failed: ", detail), call. = FALSE)
  }
  if (verbose >= 1 && length(messages)) message(paste(messages, collapse = "\n"))
  as.character(output)
}
