// When a refresh is refused (the session ended), show the page's own answer: "Log in first".
document.addEventListener("htmx:responseError", function (event) {
  if (event.detail.xhr && event.detail.xhr.status === 401) window.location.reload();
});
