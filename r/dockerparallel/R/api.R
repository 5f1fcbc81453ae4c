# The server's HTTP API: jobs in, results out.

apiHandle <- function(api, body = NULL) {
  handle <- curl::new_handle()
  # No `Expect: 100-continue`: curl would wait a second for an answer the server does not send.
  curl::handle_setheaders(handle, Authorization = paste("Bearer", api$token), `Content-Type` = "application/json", Expect = "")
  if (!is.null(api$ca)) curl::handle_setopt(handle, cainfo = api$ca)
  if (!is.null(body)) curl::handle_setopt(handle, post = TRUE, postfields = body)
  handle
}

apiError <- function(response, what) {
  text <- rawToChar(response$content)
  message <- tryCatch(jsonlite::fromJSON(text)$error, error = function(e) NULL)
  if (is.null(message)) message <- text
  stop(paste0(what, " failed (HTTP ", response$status_code, "): ", message), call. = FALSE)
}

apiRequest <- function(api, method, path, body = NULL) {
  handle <- apiHandle(api, body)
  if (method != "GET" && is.null(body)) curl::handle_setopt(handle, customrequest = method)
  response <- curl::curl_fetch_memory(paste0(api$url, path), handle = handle)
  if (response$status_code >= 300) apiError(response, paste(method, path))
  text <- rawToChar(response$content)
  if (nzchar(text)) jsonlite::fromJSON(text, simplifyVector = FALSE) else NULL
}

# The HTTP API takes bodies up to 1 MiB: the inputs go in several submits of the same job.
submitBatches <- function(api, job, process, inputs, options) {
  encoded <- gsub("\n", "", vapply(inputs, jsonlite::base64_enc, ""), fixed = TRUE)
  sizes <- nchar(encoded) + 4L
  first <- 1L
  while (first <= length(encoded)) {
    last <- first
    total <- sizes[first]
    while (last < length(encoded) && total + sizes[last + 1L] < 700000) {
      last <- last + 1L
      total <- total + sizes[last]
    }
    body <- list(
      id = job, process = as.list(process), inputs = as.list(unname(encoded[first:last])),
      inputEncoding = "base64", firstIndex = first - 1L,
      maxAttempts = options$maxAttempts, failureRetries = options$retries)
    if (!is.null(options$timeout)) body$timeout <- options$timeout
    apiRequest(api, "POST", "/api/v1/jobs", jsonlite::toJSON(body, auto_unbox = TRUE, null = "null"))
    first <- last + 1L
  }
  invisible(job)
}

# Every result of a job, in input order, as they come; `progress(done, total)` after each.
fetchResults <- function(api, job, total, progress = NULL) {
  results <- vector("list", total)
  pending <- raw(0)
  done <- 0L
  handle <- apiHandle(api)
  url <- paste0(api$url, "/api/v1/jobs/", utils::URLencode(job, reserved = TRUE), "/results?encoding=base64")
  status <- NULL
  curl::handle_setopt(handle, failonerror = FALSE)
  collect <- function(chunk) {
    pending <<- c(pending, chunk)
    ends <- which(pending == as.raw(10L))
    if (!length(ends)) return(invisible())
    start <- 1L
    for (end in ends) {
      line <- rawToChar(pending[start:(end - 1L)])
      start <- end + 1L
      record <- jsonlite::fromJSON(line, simplifyVector = FALSE)
      if (is.null(record$index)) next
      results[[record$index + 1L]] <<- record
      done <<- done + 1L
    }
    pending <<- if (start <= length(pending)) pending[start:length(pending)] else raw(0)
    if (!is.null(progress)) progress(done, total)
    invisible()
  }
  response <- curl::curl_fetch_stream(url, collect, handle = handle)
  if (response$status_code >= 300) {
    response$content <- pending
    apiError(response, paste("GET results of job", job))
  }
  results
}
