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

# The HTTP API takes job bodies up to 32 MiB: the inputs go in submits of about 8 MB, each
# after the inputs sent before (firstIndex).
submitBatches <- function(api, job, process, inputs, options) {
  encoded <- gsub("\n", "", vapply(inputs, jsonlite::base64_enc, ""), fixed = TRUE)
  sizes <- nchar(encoded) + 4L
  first <- 1L
  while (first <= length(encoded)) {
    last <- first
    total <- sizes[first]
    while (last < length(encoded) && total + sizes[last + 1L] < 8e6) {
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

# Every result of a job, in input order, as they come; `progress(done, total)` after each batch.
# A stream that ends early (a restarted server, a dropped connection) is taken up again from the
# first result still missing; a server that does not answer (starting, restarting) is waited for
# up to `patience` seconds.
fetchResults <- function(api, job, total, progress = NULL, patience = 300) {
  results <- vector("list", total)
  done <- 0L
  base <- paste0(api$url, "/api/v1/jobs/", utils::URLencode(job, reserved = TRUE), "/results?encoding=base64&from=")
  lastProgress <- Sys.time()
  emptyStreams <- 0L
  pause <- 0.25
  while (done < total) {
    before <- done
    # The bytes of the line being received, as a list of pieces (no copying per piece).
    pieces <- list()
    collect <- function(chunk) {
      ends <- which(chunk == as.raw(10L))
      start <- 1L
      for (end in ends) {
        line <- rawToChar(do.call(c, c(pieces, list(chunk[start:end]))))
        pieces <<- list()
        start <- end + 1L
        record <- jsonlite::fromJSON(line, simplifyVector = FALSE)
        if (is.null(record$index) || !is.null(results[[record$index + 1L]])) next
        results[[record$index + 1L]] <<- record
        done <<- done + 1L
      }
      if (start <= length(chunk)) pieces[[length(pieces) + 1L]] <<- chunk[start:length(chunk)]
      if (!is.null(progress) && length(ends)) progress(done, total)
      invisible()
    }
    from <- match(TRUE, vapply(results, is.null, NA)) - 1L
    response <- tryCatch(curl::curl_fetch_stream(paste0(base, from), collect, handle = apiHandle(api)), error = function(e) e)
    unavailable <- inherits(response, "error") || response$status_code %in% c(502L, 503L, 504L)
    if (!unavailable && response$status_code >= 300) {
      response$content <- do.call(c, pieces)
      apiError(response, paste("GET results of job", job))
    }
    if (done > before) {
      lastProgress <- Sys.time()
      emptyStreams <- 0L
      pause <- 0.25
      next
    }
    if (unavailable) {
      waited <- as.numeric(difftime(Sys.time(), lastProgress, units = "secs"))
      if (waited > patience) {
        stop("the server of job '", job, "' has not answered for ", round(waited), " s (", done, " of ", total,
             " results in): ", if (inherits(response, "error")) conditionMessage(response) else paste("HTTP", response$status_code),
             call. = FALSE)
      }
      Sys.sleep(pause)
      pause <- min(pause * 2, 5)
    } else {
      # The server ended a stream with nothing new three times: something else is wrong.
      emptyStreams <- emptyStreams + 1L
      if (emptyStreams >= 3L) {
        stop("the results of job '", job, "' stopped coming (", done, " of ", total, "): the server ended the stream", call. = FALSE)
      }
    }
  }
  results
}
