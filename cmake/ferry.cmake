# Helpers shared by every module's CMakeLists.txt.
#
# ferry_module(NAME <m> [DEPS <ferry modules>...] [LIBS <system libs>...] [EXCLUDE <files>])
#   Builds every src/<m>/*.c into ferry_<m> (and ferry_<m>_asan). Files named
#   *_avx2.c are compiled with -mavx2 -mfma -mf16c; they must only be entered
#   after a run-time CPU check. Unit tests tests/unit/test_<m>.c and
#   tests/unit/test_<m>_*.c become ctest tests labelled "unit" (and "asan").

set(FERRY_WARNINGS -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes
    -Wmissing-prototypes -Wvla -Wimplicit-fallthrough)
set(FERRY_SAN_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all
    -fno-omit-frame-pointer)

find_library(CMOCKA_LIB cmocka)

function(ferry_module)
    cmake_parse_arguments(M "" "NAME" "DEPS;LIBS;EXCLUDE" ${ARGN})
    file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.c)
    foreach(x IN LISTS M_EXCLUDE)
        list(REMOVE_ITEM srcs ${CMAKE_CURRENT_SOURCE_DIR}/${x})
    endforeach()
    if(NOT srcs)
        return()
    endif()
    file(GLOB avx2_srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_avx2.c)
    if(avx2_srcs)
        set_source_files_properties(${avx2_srcs} PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
    endif()
    # "_rel" stands for the plain variant: CMake lists cannot hold an empty item.
    set(variants _rel)
    if(FERRY_ASAN_TESTS)
        list(APPEND variants _asan)
    endif()
    foreach(vv IN LISTS variants)
        if(vv STREQUAL "_rel")
            set(v "")
        else()
            set(v ${vv})
        endif()
        set(t ferry_${M_NAME}${v})
        add_library(${t} STATIC ${srcs})
        target_include_directories(${t} PUBLIC ${CMAKE_SOURCE_DIR}/src)
        target_compile_options(${t} PRIVATE ${FERRY_WARNINGS})
        target_compile_definitions(${t} PUBLIC _GNU_SOURCE
            FERRY_VERSION="${PROJECT_VERSION}" FERRY_COMMIT="${FERRY_GIT_COMMIT}")
        if(v STREQUAL "_asan")
            target_compile_options(${t} PUBLIC ${FERRY_SAN_FLAGS})
            target_link_options(${t} PUBLIC ${FERRY_SAN_FLAGS})
        endif()
        foreach(d IN LISTS M_DEPS)
            target_link_libraries(${t} PUBLIC ferry_${d}${v})
        endforeach()
        target_link_libraries(${t} PUBLIC ${M_LIBS} Threads::Threads m)
    endforeach()
    if(NOT CMOCKA_LIB)
        return()
    endif()
    file(GLOB tests CONFIGURE_DEPENDS
         ${CMAKE_SOURCE_DIR}/tests/unit/test_${M_NAME}.c
         ${CMAKE_SOURCE_DIR}/tests/unit/test_${M_NAME}_*.c)
    foreach(tsrc IN LISTS tests)
        get_filename_component(tname ${tsrc} NAME_WE)
        foreach(vv IN LISTS variants)
            if(vv STREQUAL "_rel")
                set(v "")
            else()
                set(v ${vv})
            endif()
            add_executable(${tname}${v} ${tsrc})
            target_compile_options(${tname}${v} PRIVATE ${FERRY_WARNINGS})
            target_link_libraries(${tname}${v} PRIVATE ferry_${M_NAME}${v} ${CMOCKA_LIB})
            add_test(NAME ${tname}${v} COMMAND ${tname}${v}
                     WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
            set_tests_properties(${tname}${v} PROPERTIES
                ENVIRONMENT "FERRY_SHARED=${CMAKE_SOURCE_DIR}/../shared;FERRY_BIN=${CMAKE_BINARY_DIR}/ferry;ASAN_OPTIONS=detect_leaks=1;UBSAN_OPTIONS=print_stacktrace=1"
                TIMEOUT 600)
            if(v STREQUAL "_asan")
                set_tests_properties(${tname}${v} PROPERTIES LABELS "unit;asan")
            else()
                set_tests_properties(${tname}${v} PROPERTIES LABELS "unit")
            endif()
        endforeach()
    endforeach()
endfunction()

# ferry_script_test(NAME <n> LABEL <l> COMMAND <cmd...> [TIMEOUT s])
#   A test that runs a script against the built binary (integration, conformance,
#   reference, fuzz). FERRY_BIN, FERRY_SRC, FERRY_SHARED are in its environment.
function(ferry_script_test)
    cmake_parse_arguments(T "" "NAME;LABEL;TIMEOUT" "COMMAND" ${ARGN})
    if(NOT T_TIMEOUT)
        set(T_TIMEOUT 300)
    endif()
    add_test(NAME ${T_NAME} COMMAND ${T_COMMAND} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
    set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABEL}" TIMEOUT ${T_TIMEOUT}
        ENVIRONMENT "FERRY_BIN=${CMAKE_BINARY_DIR}/ferry;FERRY_SRC=${CMAKE_SOURCE_DIR};FERRY_BUILD=${CMAKE_BINARY_DIR};FERRY_SHARED=${CMAKE_SOURCE_DIR}/../shared"
        SKIP_RETURN_CODE 77)
endfunction()
